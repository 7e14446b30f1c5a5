// The smtp-server options the edge relies on that patches/smtp-server+3.21.6.patch adds
// (docs/library-patches.md), against a real server on a loopback socket. An install where the
// patch did not apply fails here, not silently at run time (the options would be ignored).
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { afterEach, describe, expect, it } from 'vitest';

const servers: SMTPServer[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

async function listen(options: SMTPServerOptions): Promise<SMTPServer> {
  const server = new SMTPServer({ disabledCommands: ['AUTH', 'STARTTLS'], authOptional: true, logger: false, disableReverseLookup: true, ...options });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return server;
}

/** A raw client that keeps reading after its own FIN. */
async function connect(server: SMTPServer) {
  const { port } = server.server.address() as net.AddressInfo;
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  sockets.push(socket);
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  const ended = once(socket, 'end').then(() => true);
  const lines = () => received.split('\r\n').filter((line) => line !== '');
  /** Resolves once `count` final reply lines ("250 ", not "250-") are in, or rejects at the deadline. */
  const finals = () => lines().filter((line) => / /.test(line.slice(3, 4)));
  const until = async (count: number, deadlineMs = 10_000) => {
    const deadline = Date.now() + deadlineMs;
    while (finals().length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} reply lines, got ${JSON.stringify(lines())}`);
      await delay(10);
    }
    return finals();
  };
  await until(1);
  return {
    socket,
    lines: finals,
    until,
    /** Sends a command and waits for its reply; the last line of it. */
    async command(line: string) {
      const before = finals().length;
      socket.write(`${line}\r\n`);
      return (await until(before + 1)).at(-1);
    },
    ended: () => Promise.race([ended, delay(10_000).then(() => false)]),
  };
}

const message = 'Subject: t\r\n\r\nbody\r\n.\r\n';

/** A client that sends `text` the moment it is connected, before any greeting; every reply line
 *  until the server closes. */
async function talkFirst(server: SMTPServer, text: string): Promise<string[]> {
  const { port } = server.server.address() as net.AddressInfo;
  const socket = net.connect({ port, host: '127.0.0.1' });
  sockets.push(socket);
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  socket.once('connect', () => socket.write(text));
  const ended = await Promise.race([once(socket, 'close').then(() => true), delay(10_000).then(() => false)]);
  const lines = received.split('\r\n').filter((line) => line !== '');
  return ended ? lines : [...lines, '(still open)'];
}

describe('smtp-server options from the patch', () => {
  it('respectEnhancedStatusCodes: a reply text leading with a code of its class gets no second one', async () => {
    const server = await listen({
      hideENHANCEDSTATUSCODES: false,
      respectEnhancedStatusCodes: true,
      onMailFrom(address, _session, callback) {
        const [code, text] = address.address.split('@')[0]?.split('-') ?? [];
        callback(Object.assign(new Error(text?.replaceAll('_', ' ')), { responseCode: Number(code) }));
      },
    });
    const client = await connect(server);
    await client.command('EHLO client.test');
    expect(await client.command('MAIL FROM:<451-4.3.0_try_later@a.test>')).toBe('451 4.3.0 try later');
    expect(await client.command('MAIL FROM:<550-5.7.1_denied@a.test>')).toBe('550 5.7.1 denied');
    // Another class, or no code at the head: smtp-server's own mapping, as before.
    expect(await client.command('MAIL FROM:<550-4.3.0_odd@a.test>')).toBe('550 5.1.1 4.3.0 odd');
    expect(await client.command('MAIL FROM:<550-plain@a.test>')).toBe('550 5.1.1 plain');
    client.socket.destroy();
  });

  it('keepAddressesAsReceived: an xn-- domain stays xn--, a UTF-8 one stays UTF-8', async () => {
    const seen: string[] = [];
    const server = await listen({
      keepAddressesAsReceived: true,
      onMailFrom(address, _session, callback) {
        seen.push(address.address);
        callback();
      },
      onRcptTo(address, _session, callback) {
        seen.push(address.address);
        callback();
      },
    });
    const client = await connect(server);
    await client.command('EHLO client.test');
    expect(await client.command('MAIL FROM:<a@xn--bcher-kva.example>')).toMatch(/^250 /);
    expect(await client.command('RCPT TO:<b@xn--bcher-kva.example>')).toMatch(/^250 /);
    expect(await client.command('RSET')).toMatch(/^250 /);
    expect(await client.command('MAIL FROM:<c@bücher.example> SMTPUTF8')).toMatch(/^250 /);
    expect(seen).toEqual(['a@xn--bcher-kva.example', 'b@xn--bcher-kva.example', 'c@bücher.example']);
    client.socket.destroy();
  });

  it('soft and hard error limits: commands wait past the soft limit, 421 4.7.0 at the hard one, an accepted message forgives', async () => {
    const delays: number[] = [];
    const limits: number[] = [];
    const server = await listen({
      hideENHANCEDSTATUSCODES: false,
      softErrorLimit: 2,
      hardErrorLimit: 3,
      errorSleepTime: 50,
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => callback(null, 'queued'));
      },
    });
    server.on('errorDelay', (_session, errors) => delays.push(errors));
    server.on('errorLimit', (_session, errors) => limits.push(errors));
    const client = await connect(server);
    await client.command('EHLO client.test');
    expect(await client.command('BOGUS')).toMatch(/^500 /);
    expect(await client.command('RCPT TO:<a@b.test>')).toMatch(/^503 /);
    // Two errors: an accepted message starts the count again, with no delay after it.
    expect(await client.command('MAIL FROM:<a@b.test>')).toMatch(/^250 /);
    expect(delays).toEqual([2]);
    await client.command('RCPT TO:<c@d.test>');
    await client.command('DATA');
    client.socket.write(message);
    await client.until(8);
    expect(client.lines().at(-1)).toBe('250 2.6.0 queued');
    // MAIL, RCPT and DATA waited; from here on the count starts at zero.
    expect(delays).toEqual([2, 2, 2]);
    expect(await client.command('BOGUS')).toMatch(/^500 /);
    expect(await client.command('BOGUS')).toMatch(/^500 /);
    expect(delays).toEqual([2, 2, 2]);
    client.socket.write('BOGUS\r\n');
    const lines = await client.until(12);
    expect(lines.slice(-2)).toEqual(['500 5.5.2 Error: command not recognized', '421 4.7.0 Error: too many errors']);
    expect(delays).toEqual([2, 2, 2, 2]);
    expect(limits).toEqual([3]);
    expect(await client.ended()).toBe(true);
  });

  // With a pipelined group (RFC 2920), each reply is a socket write without the option: three
  // writes for MAIL, RCPT and DATA, and the MAIL reply on its own while the RCPT is looked up.
  // With it, the three go out in one write once the DATA is answered.
  for (const coalesceReplies of [true, false]) {
    it(`coalesceReplies ${coalesceReplies}: the replies to a pipelined MAIL, RCPT and DATA ${coalesceReplies ? 'arrive in one piece' : 'arrive one by one'}`, async () => {
      const server = await listen({
        coalesceReplies,
        onRcptTo(_address, _session, callback) {
          // A lookup that takes a while: long enough for a reply already written to arrive alone.
          setTimeout(() => callback(), 200);
        },
        onData(stream, _session, callback) {
          stream.resume();
          stream.on('end', () => callback());
        },
      });
      const client = await connect(server);
      await client.command('EHLO client.test');
      const chunks: string[] = [];
      client.socket.on('data', (chunk: Buffer) => chunks.push(chunk.toString('latin1')));
      client.socket.write('MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n');
      // The greeting, the EHLO's last line, then the three replies of the group.
      await client.until(5);
      const first = chunks[0]?.split('\r\n').filter((line) => line !== '') ?? [];
      if (coalesceReplies) expect(first.map((line) => line.slice(0, 3))).toEqual(['250', '250', '354']);
      else expect(first.map((line) => line.slice(0, 3))).toEqual(['250']);
      expect(await client.command(message.slice(0, -2))).toMatch(/^250 /);
      client.socket.destroy();
    });
  }

  it('commandLineTimeout: a line trickled a byte at a time is cut at the deadline with 421 and the event; a line that ends in time is answered and starts it again', async () => {
    const timedOut: string[] = [];
    // The idle timeout alone would wait 20 s, re-armed by every byte.
    const server = await listen({ hideENHANCEDSTATUSCODES: false, socketTimeout: 20_000, commandLineTimeout: 1_000 });
    server.on('commandLineTimeout', (session) => timedOut.push(session.id));
    const client = await connect(server);
    // Two lines, each sent in two pieces 600 ms apart: 1.2 s for the two, each line within its second.
    for (const [count, line] of [[2, 'EHLO client.test'], [3, 'NOOP']] as const) {
      client.socket.write(line.slice(0, 3));
      await delay(600);
      client.socket.write(`${line.slice(3)}\r\n`);
      expect((await client.until(count)).at(-1)).toMatch(/^250 /);
    }
    // A byte every 50 ms, never a line end: 421 one deadline after the first byte.
    const trickle = setInterval(() => client.socket.write('x'), 50);
    try {
      const lines = await client.until(4, 10_000);
      expect(lines.at(-1)).toBe('421 4.4.2 Timeout - closing connection');
    } finally {
      clearInterval(trickle);
    }
    expect(timedOut).toHaveLength(1);
    expect(await client.ended()).toBe(true);
  });

  it('rejectMalformedUtf8: a command line that is not UTF-8 gets 500 5.5.2 and the event; UTF-8 and ASCII lines go on', async () => {
    const addresses: string[] = [];
    const malformed: string[] = [];
    const server = await listen({
      hideENHANCEDSTATUSCODES: false,
      rejectMalformedUtf8: true,
      onMailFrom(address, _session, callback) {
        addresses.push(address.address);
        callback();
      },
      onRcptTo(address, _session, callback) {
        addresses.push(address.address);
        callback();
      },
    });
    server.on('malformedUtf8', (session) => malformed.push(session.id));
    const client = await connect(server);
    await client.command('EHLO client.test');
    const raw = async (...parts: (string | number[])[]) => {
      const before = client.lines().length;
      client.socket.write(Buffer.concat([...parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part))), Buffer.from('\r\n')]));
      return (await client.until(before + 1)).at(-1);
    };
    // A stray Latin-1 byte, a cut sequence, an encoded surrogate (ED A0 80), an overlong "/" (C0 AF).
    expect(await raw('MAIL FROM:<a', [0xe9], 'b@client.test> SMTPUTF8')).toBe('500 5.5.2 Error: bad UTF-8 syntax');
    expect(await raw('MAIL FROM:<a', [0xc3], '@client.test> SMTPUTF8')).toBe('500 5.5.2 Error: bad UTF-8 syntax');
    expect(await raw('MAIL FROM:<a', [0xed, 0xa0, 0x80], '@client.test> SMTPUTF8')).toBe('500 5.5.2 Error: bad UTF-8 syntax');
    expect(await raw('MAIL FROM:<a', [0xc0, 0xaf], '@client.test> SMTPUTF8')).toBe('500 5.5.2 Error: bad UTF-8 syntax');
    expect(malformed).toHaveLength(4);
    // Valid UTF-8 is taken as sent; the session went on.
    expect(await client.command('MAIL FROM:<josé@client.test> SMTPUTF8')).toMatch(/^250 /);
    expect(await raw('RCPT TO:<r', [0xff], '@server.test>')).toBe('500 5.5.2 Error: bad UTF-8 syntax');
    expect(await client.command('RCPT TO:<r@server.test>')).toMatch(/^250 /);
    expect(addresses).toEqual(['josé@client.test', 'r@server.test']);
    client.socket.destroy();
  });

  it('rejectMalformedUtf8 in a pipelined group: every line answered, in order, and the 500s count toward hardErrorLimit', async () => {
    const server = await listen({ hideENHANCEDSTATUSCODES: false, rejectMalformedUtf8: true, coalesceReplies: true, hardErrorLimit: 3 });
    const client = await connect(server);
    await client.command('EHLO client.test');
    const before = client.lines().length;
    // One write: a stray byte, a cut sequence (E2 82), an overlong "/" (C0 AF), among good lines.
    client.socket.write(
      Buffer.concat([
        Buffer.from('NOOP '),
        Buffer.from([0xff]),
        Buffer.from('\r\nMAIL FROM:<josé@client.test> SMTPUTF8\r\nRCPT TO:<r'),
        Buffer.from([0xe2, 0x82]),
        Buffer.from('@server.test>\r\nRCPT TO:<r@server.test>\r\nVRFY '),
        Buffer.from([0xc0, 0xaf]),
        Buffer.from('\r\nNOOP\r\n'),
      ]),
    );
    const replies = (await client.until(before + 6)).slice(before);
    // Three errors reach the hard limit: the next command is answered 421 and the session closed.
    expect(replies.map((line) => line.slice(0, 9))).toEqual(['500 5.5.2', '250 2.1.0', '500 5.5.2', '250 2.1.5', '500 5.5.2', '421 4.7.0']);
    expect(await client.ended()).toBe(true);
  });

  // Not an option: a fix the patch carries. SMTPStream.continue() cleared the continuation after
  // running it; when what it resumed ended the next message at once (hooks that answer at once,
  // the message pipelined in the same chunk), that message's continuation was cleared with it and
  // the session hung after its reply. It showed once a chunk's dot-stuffed lines were unstuffed in
  // one pass, without an event-loop turn per line.
  it('two whole transactions pipelined in one write, hooks answering at once: both answered, and the QUIT after them', async () => {
    const server = await listen({
      onMailFrom: (_address, _session, callback) => callback(),
      onRcptTo: (_address, _session, callback) => callback(),
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => callback(null, 'queued'));
      },
    });
    const client = await connect(server);
    await client.command('EHLO client.test');
    const transaction = `MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n..one\r\n.\r\n`;
    client.socket.write(`${transaction}${transaction}QUIT\r\n`);
    const lines = await client.until(11);
    expect(lines.slice(2).map((line) => line.slice(0, 3))).toEqual(['250', '250', '354', '250', '250', '250', '354', '250', '221']);
    expect(await client.ended()).toBe(true);
  });

  it('greetingDelay 0: the greeting is written at once, so a client that talks first is served', async () => {
    // A synchronous onConnect, as the edge's: smtp-server's default one answers on setImmediate, and
    // a client talking in that moment is an early talker whatever the delay.
    const server = await listen({ greetingDelay: 0, onConnect: (_session, callback) => callback() });
    const lines = await talkFirst(server, 'EHLO client.test\r\nQUIT\r\n');
    expect(lines[0]).toMatch(/^220 /);
    expect(lines.at(-2)).toMatch(/^250 /);
    expect(lines.at(-1)).toMatch(/^221 /);
  });

  it('greetingDelay unset: 100 ms, as in smtp-server without the option', () => {
    const delayOf = (options: SMTPServerOptions) =>
      (SMTPConnection.prototype as unknown as { _greetingDelay(this: object): number })._greetingDelay.call({ _server: { options } });
    expect(delayOf({})).toBe(100);
    expect(delayOf({ greetingDelay: 250 })).toBe(250);
    expect(delayOf({ greetingDelay: () => 0 })).toBe(0);
  });

  it('greetingDelay as a function: asked per connection; an early talker gets 421 and the event, onConnect runs only for a client that waited', async () => {
    const asked: string[] = [];
    const connected: string[] = [];
    const earlyTalkers: string[] = [];
    const passed = new Set<string>();
    // Long enough that the early talker's bytes are in long before it, however loaded the machine.
    let wait = 10_000;
    const server = await listen({
      greetingDelay(remoteAddress) {
        asked.push(remoteAddress);
        return passed.has(remoteAddress) ? 0 : wait;
      },
      onConnect(session, callback) {
        connected.push(session.remoteAddress);
        passed.add(session.remoteAddress);
        callback();
      },
    });
    server.on('earlyTalker', (remoteAddress) => earlyTalkers.push(remoteAddress));
    const early = await talkFirst(server, 'EHLO client.test\r\nQUIT\r\n');
    expect(early).toEqual([expect.stringMatching(/^421 .*You talk too soon$/)]);
    expect({ earlyTalkers, connected }).toEqual({ earlyTalkers: ['127.0.0.1'], connected: [] });
    // A client that waits for the greeting passes ...
    wait = 30;
    const patient = await connect(server);
    expect(await patient.command('EHLO client.test')).toMatch(/^250 /);
    patient.socket.destroy();
    expect(connected).toEqual(['127.0.0.1']);
    // ... and is greeted at once the next time, talking first or not.
    wait = 10_000;
    const lines = await talkFirst(server, 'EHLO client.test\r\nQUIT\r\n');
    expect(lines[0]).toMatch(/^220 /);
    expect(lines.at(-1)).toMatch(/^221 /);
    expect(asked).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    expect(earlyTalkers).toEqual(['127.0.0.1']);
  });

  it.each([
    ['the final dot', ''],
    ['the final dot and QUIT', 'QUIT\r\n'],
    // smtp-server dispatches a last line without CRLF at the end of input: it is answered too.
    ['the final dot and QUIT without its CRLF', 'QUIT'],
  ])('allowHalfOpen: a client that sends %s with its FIN gets every reply, then the close', async (_name, tail) => {
    const server = await listen({
      allowHalfOpen: true,
      onData(stream, _session, callback) {
        stream.resume();
        // A commit that outlasts the client's FIN.
        stream.on('end', () => setTimeout(() => callback(null, 'queued as x'), 200));
      },
    });
    const client = await connect(server);
    client.socket.end(`EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n${message}${tail}`);
    expect(await client.ended()).toBe(true);
    const codes = client.lines().map((line) => line.slice(0, 4));
    expect(client.lines()).toContain('250 queued as x');
    expect(codes.at(-1)).toBe(tail ? '221 ' : '250 ');
  });

  it('allowHalfOpen: the same inside STARTTLS (the TLS socket is half-open too)', async () => {
    const server = await listen({
      allowHalfOpen: true,
      // smtp-server's built-in test certificate: enough for a loopback handshake.
      disabledCommands: ['AUTH'],
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('end', () => setTimeout(() => callback(null, 'queued as x'), 200));
      },
    });
    const client = await connect(server);
    await client.command('EHLO client.test');
    expect(await client.command('STARTTLS')).toMatch(/^220 /);
    client.socket.removeAllListeners('data');
    // Half-open like the socket it wraps (Node's TLSSocket takes allowHalfOpen from it).
    const secure = tls.connect({ socket: client.socket, rejectUnauthorized: false });
    sockets.push(secure);
    let received = '';
    secure.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    secure.on('error', () => {});
    await once(secure, 'secureConnect');
    secure.end(`EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n${message}QUIT\r\n`);
    const ended = await Promise.race([once(secure, 'end').then(() => true), delay(10_000).then(() => false)]);
    const lines = received.split('\r\n').filter((line) => line !== '');
    expect({ ended, last: lines.slice(-2) }).toEqual({ ended: true, last: ['250 queued as x', expect.stringMatching(/^221 /)] });
  });

  it('allowHalfOpen: a client that half-closes in the middle of DATA is closed, nothing answered for the message', async () => {
    let streamError: string | null = null;
    const server = await listen({
      allowHalfOpen: true,
      onData(stream, _session, callback) {
        stream.resume();
        stream.on('error', (error) => {
          streamError = (error as NodeJS.ErrnoException).code ?? error.message;
          callback(error);
        });
        stream.on('end', () => callback(null, 'queued as x'));
      },
    });
    const client = await connect(server);
    client.socket.end('EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: cut\r\n\r\nhalf');
    expect(await client.ended()).toBe(true);
    expect(client.lines().at(-1)).toMatch(/^354 /);
    expect(streamError).toBe('ECONNECTION');
  });
});
