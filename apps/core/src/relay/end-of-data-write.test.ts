// nodemailer's data stream (patches/nodemailer+10.6.0.patch) hands a short message and its end of
// data to the socket in one write: the unpatched library wrote the message, then ".\r\n" on its
// own, and each write woke the relay to read it (in the engine's smtp mode, a third of its socket
// writes). The bytes on the wire stay exactly the library's: dot-stuffing and line ends do not
// depend on how the message was cut into chunks.
import { once } from 'node:events';
import type { AddressInfo, Server, Socket } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineSmtpServer } from './line-smtp.testkit.ts';

let server: Server;
let connection: SMTPConnection;
/** What the connection wrote to its socket after the DATA command, write by write. */
let writes: Buffer[] = [];
let afterData = false;

beforeAll(async () => {
  server = lineSmtpServer({ greeting: '220 relay.test ESMTP', ehlo: ['relay.test', 'PIPELINING', '8BITMIME'] });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  connection = new SMTPConnection({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, logger: false, ignoreTLS: true });
  await new Promise<void>((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => resolve());
  });
  // Every write the library makes, corked command groups included, goes through write().
  const socket = (connection as unknown as { _socket: Socket })._socket;
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((chunk: string | Buffer, ...rest: unknown[]) => {
    const bytes = Buffer.from(chunk);
    if (afterData) writes.push(bytes);
    else if (bytes.toString('latin1') === 'DATA\r\n') afterData = true;
    return write(chunk, ...rest);
  }) as Socket['write'];
});

afterAll(() => {
  connection?.close();
  server?.close();
});

async function send(chunks: Buffer[]): Promise<Buffer[]> {
  writes = [];
  afterData = false;
  await new Promise<void>((resolve, reject) => {
    connection.send({ from: 'a@sender.test', to: ['b@relay.test'] }, Readable.from(chunks), (error) => (error ? reject(error) : resolve()));
  });
  return writes;
}

describe('the end of data', () => {
  it('goes out in the same write as a short message', async () => {
    const written = await send([Buffer.from('Subject: hi\r\n\r\n.hello\r\nbye')]);
    expect(written.map((bytes) => bytes.toString('latin1'))).toEqual(['Subject: hi\r\n\r\n..hello\r\nbye\r\n.\r\n']);
    const endingInNewline = await send([Buffer.from('Subject: hi\r\n\r\nbye\r\n')]);
    expect(endingInNewline.map((bytes) => bytes.toString('latin1'))).toEqual(['Subject: hi\r\n\r\nbye\r\n.\r\n']);
  });

  it('follows a large last chunk in a write of its own, the chunk not copied', async () => {
    const large = Buffer.alloc(100_000, 'a');
    const written = await send([Buffer.from('Subject: big\r\n\r\n'), large]);
    expect(written.map((bytes) => bytes.length)).toEqual([16, 100_000, 5]);
    expect(written[2]?.toString('latin1')).toBe('\r\n.\r\n');
  });

  it('leaves the bytes on the wire as the message cut into one chunk gives them, in no more writes than chunks', async () => {
    const byte = fc.constantFrom(...[0x2e, 0x0d, 0x0a, 0x61, 0x00, 0xc3].map((value) => Buffer.of(value)));
    // Pieces of at most 40 bytes (80 once stuffed: held back), or one over 16 KiB (passed on at once).
    const large = Buffer.from('.\r\n'.repeat(6_700));
    const piece = fc.oneof(fc.array(byte, { minLength: 1, maxLength: 40 }).map((bytes) => Buffer.concat(bytes)), fc.constant(large));
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 6 }), async (chunks) => {
        const whole = Buffer.concat(await send([Buffer.concat(chunks)]));
        const cut = await send(chunks);
        expect(Buffer.concat(cut).equals(whole)).toBe(true);
        // The end of data goes with the last piece unless that one is large (the unpatched library: always apart).
        expect(cut.length).toBeLessThanOrEqual(chunks.length + (chunks.at(-1) === large ? 1 : 0));
      }),
      { numRuns: 50 },
    );
  });
});
