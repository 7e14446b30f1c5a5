// A relay written on raw TCP, not on smtp-server, so that it can answer what no well-behaved server
// library would let it write: NUL bytes, invalid UTF-8, bare CR, escape sequences, replies of a
// megabyte, multi-line replies of 100,000 lines, codes outside 2xx-5xx, a refusal followed by a closed
// or silent connection, an AUTH never answered.
// What it answers is chosen per recipient (the local part's first label, `nul-1@...` -> `nul`; for
// MAIL FROM, by the envelope sender's), at the step the rule names; everything else is accepted. It
// counts what it read after DATA and what it answered 2xx to, by Message-ID, so duplicates are
// counted at the relay.
import net from 'node:net';

export type Step = 'mail' | 'rcpt' | 'data' | 'dot';

export interface ReplyRule {
  at: Step;
  /** Bytes written as the reply (CRLF is not added), or: close the socket / never answer. */
  reply: Buffer | 'drop' | 'hang';
  /** After writing the reply: close the connection, or never answer on it again. */
  afterwards?: 'close' | 'ignore';
}

export interface HostileRelay {
  host: string;
  port: number;
  /** Messages read after DATA, by Message-ID. */
  received: Map<string, number>;
  /** Messages answered 2xx after the final dot, by Message-ID. */
  accepted: Map<string, number>;
  /** The reply to EHLO. */
  setEhlo(reply: Buffer): void;
  /** The reply to AUTH (advertise it with setEhlo): bytes, never a reply, or the connection closed. */
  setAuth(reply: Buffer | 'hang' | 'close'): void;
  close(): Promise<void>;
}

function messageIdOf(raw: Buffer): string {
  const head = raw.subarray(0, Math.max(0, raw.indexOf('\r\n\r\n'))).toString('latin1');
  return /^Message-ID:[ \t]*(.*)$/im.exec(head)?.[1]?.trim() ?? '(no Message-ID)';
}

export async function startHostileRelay(rules: Record<string, ReplyRule>): Promise<HostileRelay> {
  let ehlo: Buffer = Buffer.from('250-hostile.test\r\n250 8BITMIME\r\n');
  let auth: Buffer | 'hang' | 'close' = Buffer.from('235 2.7.0 ok\r\n');
  const received = new Map<string, number>();
  const accepted = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let inData = false;
    let rule: ReplyRule | undefined;
    let ignoring = false;
    /** Answers with the rule's reply if it is for this step; false if the session ends here. */
    const answer = (step: Step, normal: string): boolean => {
      if (rule?.at !== step) {
        socket.write(normal);
        return true;
      }
      if (rule.reply === 'drop') {
        socket.destroy();
        return false;
      }
      if (rule.reply === 'hang') return false;
      socket.write(rule.reply);
      if (rule.afterwards === 'close') {
        socket.end();
        return false;
      }
      if (rule.afterwards === 'ignore') {
        ignoring = true;
        return false;
      }
      return true;
    };
    socket.write('220 hostile.test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      if (ignoring) return;
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (inData) {
          const end = buffered.indexOf('\r\n.\r\n');
          if (end === -1) return;
          const raw = buffered.subarray(0, end + 2);
          buffered = buffered.subarray(end + 5);
          inData = false;
          const key = messageIdOf(raw);
          bump(received, key);
          const reply = rule?.at === 'dot' ? rule.reply : null;
          if (reply === null || (Buffer.isBuffer(reply) && reply[0] === 0x32)) bump(accepted, key);
          if (!answer('dot', '250 2.0.0 hostile: queued\r\n')) return;
          continue;
        }
        const eol = buffered.indexOf('\r\n');
        if (eol === -1) return;
        const line = buffered.subarray(0, eol).toString('latin1');
        buffered = buffered.subarray(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') socket.write(ehlo);
        else if (verb === 'MAIL') {
          // A rule for MAIL FROM is chosen by the envelope sender's local part.
          const local = /<([^@>]*)@/.exec(line)?.[1] ?? '';
          rule = rules[local.split('-')[0] ?? ''];
          if (!answer('mail', '250 2.1.0 ok\r\n')) return;
        } else if (verb === 'RCPT') {
          const local = /<([^@>]*)@/.exec(line)?.[1] ?? '';
          if (rule?.at !== 'mail') rule = rules[local.split('-')[0] ?? ''];
          if (!answer('rcpt', '250 2.1.5 ok\r\n')) return;
        } else if (verb === 'DATA') {
          if (!answer('data', '354 go ahead\r\n')) return;
          if (rule?.at !== 'data') inData = true;
        } else if (verb === 'AUTH') {
          if (auth === 'hang') return;
          if (auth === 'close') {
            socket.end();
            return;
          }
          socket.write(auth);
        } else if (verb === 'RSET' || verb === 'NOOP') socket.write('250 2.0.0 ok\r\n');
        else if (verb === 'QUIT') {
          socket.end('221 2.0.0 bye\r\n');
          return;
        } else socket.write('502 5.5.2 not here\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    received,
    accepted,
    setEhlo(next) {
      ehlo = next;
    },
    setAuth(next) {
      auth = next;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
