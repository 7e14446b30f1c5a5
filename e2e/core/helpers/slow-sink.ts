// A relay that is slow but alive, spoken by hand on a raw socket because smtp-server cannot do
// either misbehaviour: every reply (the greeting included) comes after a delay just under the
// engine's MAIL_SMTP_TIMEOUT, and the first RCPT for a chosen recipient is answered with a
// multi-line reply trickled one line at a time, never finished — each line resets the client's
// socket timeout, so only a whole-send deadline ends it ("slow is not stalled").
// No PIPELINING is offered: the client waits for each reply, as the delays need.
import net from 'node:net';

export interface SlowSink {
  port: number;
  /** Messages accepted (250 after DATA), by recipient: more than 1 is a duplicate. */
  accepted: Map<string, number>;
  /** The last message body accepted for each recipient (latin1). */
  bodies: Map<string, string>;
  /** Sessions currently trickling a reply that never ends. */
  readonly trickling: number;
  /** Delay before every reply. */
  setReplyDelay(ms: number): void;
  /** The first RCPT for this recipient gets a reply trickled one line every `everyMs`, for ever. */
  trickleOnce(recipient: string, everyMs: number): void;
  close(): Promise<void>;
}

export async function startSlowSink(): Promise<SlowSink> {
  const accepted = new Map<string, number>();
  const bodies = new Map<string, string>();
  const trickles = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  let replyDelayMs = 0;
  let trickling = 0;

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    let inData = false;
    let recipient = '';
    let chain = Promise.resolve();
    const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const reply = (text: string) => {
      chain = chain.then(async () => {
        await wait(replyDelayMs);
        if (!socket.destroyed) socket.write(`${text}\r\n`);
      });
    };
    const trickle = (everyMs: number) => {
      chain = chain.then(async () => {
        // Counted until the client closes the connection, at once (not at the next line).
        trickling += 1;
        socket.once('close', () => {
          trickling -= 1;
        });
        while (!socket.destroyed) {
          socket.write('250-still checking the recipient\r\n');
          await wait(everyMs);
        }
      });
    };
    const command = (line: string) => {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO' || verb === 'HELO') reply('250-slow.sink\r\n250-8BITMIME\r\n250 SIZE 10485760');
      else if (verb === 'MAIL') reply('250 2.1.0 sender ok');
      else if (verb === 'RCPT') {
        recipient = (/<([^>]*)>/.exec(line)?.[1] ?? '').toLowerCase();
        const everyMs = trickles.get(recipient);
        if (everyMs !== undefined) {
          trickles.delete(recipient);
          trickle(everyMs);
        } else reply('250 2.1.5 recipient ok');
      } else if (verb === 'DATA') {
        inData = true;
        reply('354 go ahead');
      } else if (verb === 'RSET' || verb === 'NOOP') reply('250 2.0.0 ok');
      else if (verb === 'QUIT') {
        reply('221 2.0.0 bye');
        chain = chain.then(() => void socket.end());
      } else reply('502 5.5.2 not implemented');
    };
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          bodies.set(recipient, buffer.slice(2, end));
          buffer = buffer.slice(end + 5);
          inData = false;
          accepted.set(recipient, (accepted.get(recipient) ?? 0) + 1);
          reply('250 2.0.0 queued');
          continue;
        }
        const newline = buffer.indexOf('\r\n');
        if (newline < 0) return;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 2);
        command(line);
        // DATA's body starts right after its command line: "\r\n.\r\n" must also match a body
        // that is empty, so keep the line break that ended the DATA command in front of it.
        if (inData) buffer = `\r\n${buffer}`;
      }
    });
    reply('220 slow.sink ESMTP');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    accepted,
    bodies,
    get trickling() {
      return trickling;
    },
    setReplyDelay(ms) {
      replyDelayMs = ms;
    },
    trickleOnce(recipient, everyMs) {
      trickles.set(recipient.toLowerCase(), everyMs);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
