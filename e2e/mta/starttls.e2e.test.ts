// STARTTLS: offered only with a certificate; with one, a real client (nodemailer, requireTLS) and
// the raw client upgrade, EHLO is forgotten and re-issued (RFC 3207 4.2), plaintext commands sent
// behind the STARTTLS are never run inside the TLS session (command injection), and the message is
// stored with "ESMTPS" in its trace header. Plaintext stays accepted on a TLS-configured edge:
// TLS on an MX is opportunistic (RFC 3207 4: a publicly-referenced server must not require it),
// because refusing plaintext would lose the mail of every sender that does not speak TLS.
import net from 'node:net';
import tls from 'node:tls';
import { createAlias, createDomain } from '@postern/shared';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { openSession, startTestEdge } from './helpers/edge.ts';
import { SmtpTestClient, sendMail, simpleMessage } from './helpers/smtp-client.ts';
import { makeSelfSignedCertificate, type TestCertificate } from './helpers/tls-certificate.ts';

let db: TestDatabase;
let certificate: TestCertificate;
let tlsEdge: Edge;
let plainEdge: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-starttls');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'one', kind: 'forward', targets: ['one@inbox.test'] });
  certificate = makeSelfSignedCertificate();
  tlsEdge = await startTestEdge(db.dsn, { MAIL_MTA_TLS_CERT: certificate.certFile, MAIL_MTA_TLS_KEY: certificate.keyFile });
  plainEdge = await startTestEdge(db.dsn);
});

afterAll(async () => {
  await Promise.all([tlsEdge?.stop(), plainEdge?.stop()]);
  certificate?.remove();
  await db?.drop();
});

async function storedMessage(messageId: string | undefined) {
  const { rows } = await db.pool.query(
    `SELECT m.helo, convert_from(substring(p.raw from 1 for 2000), 'UTF8') AS head
       FROM mail.messages m JOIN mail.message_payloads p ON p.message_id = m.id WHERE m.id = $1`,
    [messageId],
  );
  return rows[0] as { helo: string; head: string } | undefined;
}

const queuedId = (reply: string | undefined) => /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/.exec(reply ?? '')?.[1];

describe('STARTTLS with a configured certificate', () => {
  it('is advertised; after the upgrade the EHLO is forgotten and re-issued, and the message is stored', async () => {
    const { client } = await SmtpTestClient.connect(tlsEdge.smtp.port);
    const ehlo = await client.command('EHLO before.outside.test');
    expect(ehlo.lines).toContain('250-STARTTLS');
    const { socket } = await client.startTls();
    expect(socket.encrypted).toBe(true);
    // RFC 3207 4.2: what the server knew from before the handshake is discarded, EHLO included.
    expect((await client.command('MAIL FROM:<a@outside.test>')).code).toBe(503);
    const again = await client.command('EHLO after.outside.test');
    expect(again.code).toBe(250);
    expect(again.lines.some((line) => line.includes('STARTTLS'))).toBe(false);
    const result = await sendMail(client, { from: 'a@outside.test', to: ['one@postern.test'], message: simpleMessage('over-tls') });
    await client.quit();
    const stored = await storedMessage(queuedId(result.final?.raw));
    expect(stored?.helo).toBe('after.outside.test');
    // Below the Authentication-Results header of MAIL_INBOUND_AUTH_POLICY=annotate (the default).
    expect(stored?.head).toMatch(/^Authentication-Results: [^\r]*(?:\r\n\t[^\r]*)*\r\nReceived: from after\.outside\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.postern\.test \(Postern\) with ESMTPS id /);
  });

  it('commands pipelined after STARTTLS in plaintext are not run inside the TLS session (command injection)', async () => {
    // CVE-2011-0411 and its kin: a man in the middle appends commands to the client's STARTTLS in
    // the same packet; a server that keeps them in its input buffer runs them after the handshake
    // as though the client had sent them encrypted. Here they would be a MAIL FROM and a RCPT.
    const plain = net.connect(tlsEdge.smtp.port, '127.0.0.1');
    plain.setEncoding('latin1');
    let received = '';
    plain.on('data', (data: string) => {
      received += data;
    });
    const waitForText = (pattern: RegExp) =>
      waitFor('the edge to answer', () => received, (text) => pattern.test(text), { timeoutMs: 10_000, intervalMs: 20 });
    await waitForText(/^220 .*\r\n/);
    plain.write('EHLO before.outside.test\r\n');
    await waitForText(/^250 .*\r\n/m);
    received = '';
    plain.write('STARTTLS\r\nMAIL FROM:<injected@outside.test>\r\nRCPT TO:<one@postern.test>\r\n');
    await waitForText(/^220 .*\r\n/m);
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    secure.setEncoding('latin1');
    let encrypted = '';
    secure.on('data', (data: string) => {
      encrypted += data;
    });
    const closed = new Promise<void>((resolve) => secure.once('close', () => resolve()));
    secure.write('NOOP\r\nQUIT\r\n');
    await closed;
    // Everything said inside TLS, to the end of the session, answers the NOOP and the QUIT: nothing
    // answered the injected commands there (run, they would have replied first).
    expect(encrypted.split('\r\n').filter(Boolean).map((line) => line.slice(0, 4))).toEqual(['250 ', '221 ']);
  });

  it('a real client that requires TLS (nodemailer, requireTLS) upgrades and its message is accepted', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: tlsEdge.smtp.port,
      secure: false,
      requireTLS: true,
      name: 'nodemailer.outside.test',
      tls: { rejectUnauthorized: false },
    });
    try {
      const info = await transport.sendMail({
        envelope: { from: 'b@outside.test', to: ['one@postern.test'] },
        raw: simpleMessage('nodemailer-over-tls'),
      });
      // Accepted at all proves the EHLO was re-issued: the edge answers 503 to MAIL before it.
      const stored = await storedMessage(queuedId(info.response));
      expect(stored?.helo).toBe('nodemailer.outside.test');
      expect(stored?.head).toContain(' with ESMTPS id ');
    } finally {
      transport.close();
    }
  });

  it('still accepts a sender that does not use STARTTLS (opportunistic TLS on an MX)', async () => {
    const client = await openSession(tlsEdge, 'plain.outside.test');
    const result = await sendMail(client, { from: 'c@outside.test', to: ['one@postern.test'], message: simpleMessage('plaintext') });
    await client.quit();
    const stored = await storedMessage(queuedId(result.final?.raw));
    expect(stored?.head).toContain(' with ESMTP id ');
  });

  it('an unreadable certificate fails the start with a message naming the file', async () => {
    const missing = `${certificate.certFile}.missing`;
    await expect(startTestEdge(db.dsn, { MAIL_MTA_TLS_CERT: missing, MAIL_MTA_TLS_KEY: certificate.keyFile })).rejects.toThrow(
      `MAIL_MTA_TLS_CERT: cannot read ${missing} (ENOENT)`,
    );
  });
});

describe('STARTTLS without a certificate', () => {
  it('is not offered, and the command is refused', async () => {
    const client = await openSession(plainEdge);
    const ehlo = await client.command('EHLO client.outside.test');
    expect(ehlo.lines.some((line) => line.includes('STARTTLS'))).toBe(false);
    expect((await client.command('STARTTLS')).code).toBeGreaterThanOrEqual(500);
    const result = await sendMail(client, { from: 'a@outside.test', to: ['one@postern.test'], message: simpleMessage('plain') });
    expect(result.final?.code).toBe(250);
    await client.quit();
  });
});
