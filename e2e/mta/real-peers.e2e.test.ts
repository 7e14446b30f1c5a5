// Real SMTP peers we did not write, against a running edge: Python's smtplib (8BITMIME, SMTPUTF8,
// many recipients, STARTTLS across a certificate renewal), swaks (PIPELINING, many recipients, 8-bit body, dot-led lines) and Postfix's
// smtp-source (parallel sessions, several messages per session, several recipients each). Our own
// test client agrees with our own server by construction; these do not. Each test asserts the
// replies the peer saw and the rows stored. A missing peer fails the test with how to install it
// (.ci/run installs swaks and postfix; postfix preseeded to "No configuration", so no daemon runs).
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, metricSample, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, startTestEdge } from './helpers/edge.ts';
import { makeSelfSignedCertificate } from './helpers/tls-certificate.ts';

let db: TestDatabase;
let edge: Edge;

/** r01..r40@postern.test, each forwarding to its own inbox. */
const listed = Array.from({ length: 40 }, (_, i) => `r${String(i + 1).padStart(2, '0')}@postern.test`);
/** smtp-source -r N sends to Npeer@, ..., 2peer@, peer@ (a number prepended to -t). */
const SMTP_SOURCE_RECIPIENTS = 5;

beforeAll(async () => {
  db = await createTestDatabase('mta-real-peers');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'one', kind: 'forward', targets: ['one@inbox.test'] });
  for (const address of listed) {
    const localPart = address.split('@')[0] as string;
    await createAlias(db.pool, { domain: 'postern.test', localPart, kind: 'forward', targets: [`${localPart}@inbox.test`] });
  }
  for (let n = 0; n <= SMTP_SOURCE_RECIPIENTS; n++) {
    await createAlias(db.pool, { domain: 'postern.test', localPart: n === 0 ? 'peer' : `${n}peer`, kind: 'forward', targets: [`peer${n}@inbox.test`] });
  }
  edge = await startTestEdge(db.dsn, { MAIL_MTA_RATE_LIMIT_PER_MINUTE: '100000' });
});

afterAll(async () => {
  await edge?.stop();
  await db?.drop();
});

/** The peer's executable, or an error saying how to get it (never a silent skip). */
function peer(name: string, install: string): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin', '/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is not installed; this test needs it as a real SMTP peer. Install it with: ${install}`);
}

function run(file: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 90_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

interface StoredMessage {
  id: string;
  envelope_from: string;
  envelope_to: string[];
  helo: string | null;
  smtputf8: boolean;
  subject: string | null;
  raw: Buffer;
  deliveries: number;
}

async function stored(where: string, value: string): Promise<StoredMessage[]> {
  // `where` is one of two fixed column names, never input.
  const sql =
    where === 'id'
      ? `SELECT m.id, m.envelope_from, m.envelope_to, m.helo, m.smtputf8, m.subject, p.raw,
                (SELECT count(*)::int FROM mail.deliveries d WHERE d.message_id = m.id) AS deliveries
           FROM mail.messages m JOIN mail.message_payloads p ON p.message_id = m.id WHERE m.id = $1`
      : `SELECT m.id, m.envelope_from, m.envelope_to, m.helo, m.smtputf8, m.subject, p.raw,
                (SELECT count(*)::int FROM mail.deliveries d WHERE d.message_id = m.id) AS deliveries
           FROM mail.messages m JOIN mail.message_payloads p ON p.message_id = m.id WHERE m.helo = $1 ORDER BY m.received_at`;
  return (await db.pool.query<StoredMessage>(sql, [value])).rows;
}

/** The payload after the edge's headers: Authentication-Results (MAIL_INBOUND_AUTH_POLICY=annotate,
 *  the default) and the trace header, each up to the first header line not indented under it. */
function afterTrace(raw: Buffer): Buffer {
  const text = raw.toString('latin1');
  const match = /^Authentication-Results: [^\r]*\r\n(?:\t[^\r]*\r\n)*Received: [^\r]*\r\n(?:\t[^\r]*\r\n)*/.exec(text);
  return raw.subarray(match ? match[0].length : 0);
}

const queuedAs = /^2\.0\.0 queued as ([0-9a-f-]{36})$/;

describe("Python's smtplib", () => {
  const python = () => peer('python3', 'apt-get install -y python3');
  const script = path.join(import.meta.dirname, 'peers', 'smtplib_peer.py');

  it('BODY=8BITMIME with 30 accepted and 5 refused recipients: replies per RCPT, one message, 30 deliveries, bytes as sent', async () => {
    const unknown = Array.from({ length: 5 }, (_, i) => `nobody${i}@postern.test`);
    const to = [...listed.slice(0, 15), ...unknown, ...listed.slice(15, 30)];
    const message =
      'From: Sender <s@outside.test>\r\nTo: list@postern.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <smtplib-8bit@outside.test>\r\n' +
      'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' +
      'Grüße aus Köln — 8-bit body\r\n.a line that starts with a dot\r\n.\r\n..\r\nend\r\n';
    const args = { host: '127.0.0.1', port: edge.smtp.port, helo: 'smtplib-8bit.peer.test', transactions: [{ from: 's@outside.test', to, mailOptions: ['BODY=8BITMIME'], message }] };
    const result = await run(python(), [script, JSON.stringify(args)]);
    expect(result.stderr).toBe('');
    const out = JSON.parse(result.stdout);
    expect(out.features).toEqual(expect.arrayContaining(['8bitmime', 'pipelining', 'smtputf8', 'enhancedstatuscodes', 'size']));
    const [transaction] = out.transactions;
    expect(transaction.mail.code).toBe(250);
    expect(transaction.rcpt.map((reply: { code: number }) => reply.code)).toEqual(to.map((address) => (address.startsWith('nobody') ? 550 : 250)));
    expect(transaction.data.code).toBe(250);
    const id = queuedAs.exec(transaction.data.text)?.[1];
    expect(id).toBeDefined();
    const [row, ...more] = await stored('id', id as string);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ envelope_from: 's@outside.test', helo: 'smtplib-8bit.peer.test', smtputf8: false, subject: 'Grüße', deliveries: 30 });
    expect(row?.envelope_to).toEqual(to.filter((address) => !address.startsWith('nobody')));
    expect(afterTrace(row?.raw as Buffer).toString('utf8')).toBe(message);
    expect(out.quit.code).toBe(221);
  });

  it('SMTPUTF8: a UTF-8 sender and header, stored flagged smtputf8 with the envelope as received', async () => {
    const message =
      'From: Jürgen <jürgen@bücher.test>\r\nTo: one@postern.test\r\nSubject: Grüße aus Köln\r\nMessage-ID: <smtputf8@bücher.test>\r\n' +
      'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo, wie geht’s?\r\n';
    const args = {
      host: '127.0.0.1',
      port: edge.smtp.port,
      helo: 'smtplib-utf8.peer.test',
      transactions: [{ from: 'jürgen@bücher.test', to: ['one@postern.test', 'r01@postern.test'], mailOptions: ['SMTPUTF8', 'BODY=8BITMIME'], message }],
    };
    const result = await run(python(), [script, JSON.stringify(args)]);
    expect(result.stderr).toBe('');
    const [transaction] = JSON.parse(result.stdout).transactions;
    expect([transaction.mail.code, ...transaction.rcpt.map((reply: { code: number }) => reply.code), transaction.data.code]).toEqual([250, 250, 250, 250]);
    const id = queuedAs.exec(transaction.data.text)?.[1];
    const [row, ...more] = await stored('id', id as string);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ envelope_from: 'jürgen@bücher.test', smtputf8: true, subject: 'Grüße aus Köln', deliveries: 2 });
    expect(afterTrace(row?.raw as Buffer).toString('utf8')).toBe(message);
  });

  it('STARTTLS: a renewed certificate is presented to the next session without a restart; an unusable pair never is', async () => {
    // Two certificates; the edge reads its files again every 200 ms (MAIL_MTA_TLS_RELOAD_INTERVAL).
    const first = makeSelfSignedCertificate('mx-first.postern.test');
    const renewed = makeSelfSignedCertificate('mx-renewed.postern.test');
    const live = makeSelfSignedCertificate('mx-live.postern.test');
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    const sha256 = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256.replaceAll(':', '').toLowerCase();
    const tlsEdge = await startTestEdge(db.dsn, {
      MAIL_MTA_TLS_CERT: live.certFile,
      MAIL_MTA_TLS_KEY: live.keyFile,
      MAIL_MTA_TLS_RELOAD_INTERVAL: '200ms',
    });
    try {
      let session = 0;
      const sendOverTls = async () => {
        session += 1;
        const message = `From: <tls@outside.test>\r\nTo: one@postern.test\r\nSubject: over TLS ${session}\r\nMessage-ID: <tls-${session}@outside.test>\r\n\r\nhello\r\n`;
        const args = { host: '127.0.0.1', port: tlsEdge.smtp.port, helo: `smtplib-tls-${session}.peer.test`, starttls: true, transactions: [{ from: 'tls@outside.test', to: ['one@postern.test'], mailOptions: [], message }] };
        const result = await run(python(), [script, JSON.stringify(args)]);
        expect(result.stderr).toBe('');
        const out = JSON.parse(result.stdout);
        expect([out.starttls.code, out.ehlo_after_tls.code, out.transactions[0].data?.code]).toEqual([220, 250, 250]);
        return out.certificate_sha256 as string;
      };
      const gauge = async (sample: string) => metricSample(await metricsText(tlsEdge), sample);
      const notAfter = (file: string) => new Date(new X509Certificate(readFileSync(file)).validTo).getTime() / 1_000;

      expect(await sendOverTls()).toBe(sha256(first.certFile));
      expect(await gauge('mail_mta_tls_certificate_not_after_seconds')).toBe(notAfter(first.certFile));

      // Renewed in place, as a renewal tool does: the next sessions get the new certificate.
      copyFileSync(renewed.certFile, live.certFile);
      copyFileSync(renewed.keyFile, live.keyFile);
      await waitFor('a session presented the renewed certificate', sendOverTls, (fingerprint) => fingerprint === sha256(renewed.certFile));
      expect(await gauge('mail_mta_tls_certificate_not_after_seconds')).toBe(notAfter(renewed.certFile));

      // A key that does not belong to the certificate: refused, and the renewed pair stays in use.
      copyFileSync(first.keyFile, live.keyFile);
      await waitFor('the unusable files refused', () => gauge('mail_mta_tls_certificate_files_refused'), (value) => value === 1);
      expect(await sendOverTls()).toBe(sha256(renewed.certFile));
      expect(await gauge('mail_mta_tls_certificate_reloads_total{outcome="refused"}')).toBe(1);
      expect(await gauge('mail_mta_tls_certificate_reloads_total{outcome="applied"}')).toBe(1);
      // Every session above stored its message over TLS.
      const rows = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM mail.messages m JOIN mail.message_payloads p ON p.message_id = m.id
          WHERE m.helo LIKE 'smtplib-tls-%' AND position('with ESMTPS' in convert_from(substring(p.raw from 1 for 4000), 'UTF8')) > 0`,
      );
      expect(rows.rows[0]?.n).toBe(session);
    } finally {
      await tlsEdge.stop();
      for (const certificate of [first, renewed, live]) certificate.remove();
    }
  });
});

describe('swaks', () => {
  it('PIPELINING with 25 recipients (3 unknown), an 8-bit body and dot-led lines: the replies swaks saw match the rows', async () => {
    const swaks = peer('swaks', 'apt-get install -y swaks');
    const unknown = ['ghost1@postern.test', 'ghost2@postern.test', 'ghost3@postern.test'];
    const to = [...listed.slice(0, 11), ...unknown, ...listed.slice(11, 22)];
    const body = 'Grüße\n.dot-led\n..two dots\n.\nend';
    const data = `From: <swaks@outside.test>\nTo: <list@postern.test>\nSubject: swaks pipelined\nMessage-ID: <swaks@outside.test>\n\n${body}\n`;
    const result = await run(swaks, [
      '--server', `127.0.0.1:${edge.smtp.port}`, '--ehlo', 'swaks.peer.test', '--pipeline',
      '--from', 'swaks@outside.test', '--to', to.join(','), '--data', '-', '--timeout', '60',
    ], data);
    // swaks prints the client's lines with " -> " and the server's with "<- " ("<** " when refused).
    const serverLines = result.stdout.split(/\r?\n/).filter((line) => /^\s*<[-*~]/.test(line)).map((line) => line.replace(/^\s*<[-*~]+\s*/, ''));
    expect(result.stdout).toMatch(/^ -> MAIL FROM:<swaks@outside\.test>/m);
    // Pipelined: MAIL and every RCPT went out before the first of their replies came back.
    const transcript = result.stdout.split(/\r?\n/);
    const lastRcpt = transcript.findLastIndex((line) => /^ -> RCPT TO:/.test(line));
    const mailReply = transcript.findIndex((line) => /^<[-*~]+\s+250 2\.1\.0/.test(line));
    expect({ pipelined: lastRcpt < mailReply, lastRcpt, mailReply }).toMatchObject({ pipelined: true });
    const rcptReplies = serverLines.filter((line) => /^(250 2\.1\.5|550)/.test(line));
    expect(rcptReplies.map((line) => line.slice(0, 3))).toEqual(to.map((address) => (address.startsWith('ghost') ? '550' : '250')));
    const final = serverLines.find((line) => line.startsWith('250 2.0.0 queued as '));
    expect(final, result.stdout).toBeDefined();
    const id = (final as string).slice('250 2.0.0 queued as '.length).trim();
    const [row, ...more] = await stored('id', id);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ helo: 'swaks.peer.test', envelope_from: 'swaks@outside.test', subject: 'swaks pipelined', deliveries: 22 });
    expect(row?.envelope_to).toEqual(to.filter((address) => !address.startsWith('ghost')));
    // What swaks says it sent between the 354 and the final dot, unstuffed, is what is stored.
    const sent = transcript.slice(transcript.findIndex((line) => /^<-\s+354 /.test(line)) + 1, transcript.indexOf(' -> .'));
    const unstuffed = sent.map((line) => line.replace(/^ -> /, '').replace(/^\./, ''));
    expect(unstuffed).toContain('.dot-led');
    expect(afterTrace(row?.raw as Buffer).toString('utf8')).toBe(`${unstuffed.join('\r\n')}\r\n`);
    expect(serverLines.at(-1)).toMatch(/^221 /);
  });
});

describe("Postfix's smtp-source", () => {
  it(`4 parallel sessions, 5 messages each, ${SMTP_SOURCE_RECIPIENTS} recipients per message: 20 messages stored once each`, async () => {
    const smtpSource = peer(
      'smtp-source',
      'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix (no daemon is started with "No configuration")',
    );
    const helo = 'smtp-source.peer.test';
    const result = await run(smtpSource, [
      '-s', '4', '-m', '20', '-d', '-r', String(SMTP_SOURCE_RECIPIENTS), '-l', '4096', '-S', 'smtp-source load',
      '-M', helo, '-f', 'source@outside.test', '-t', 'peer@postern.test', `127.0.0.1:${edge.smtp.port}`,
    ]);
    // smtp-source aborts with a message on any reply it did not expect.
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });

    const rows = await stored('helo', helo);
    expect(rows).toHaveLength(20);
    for (const row of rows) {
      expect(row).toMatchObject({ envelope_from: 'source@outside.test', subject: 'smtp-source load', deliveries: SMTP_SOURCE_RECIPIENTS });
      // smtp-source numbers its recipients downwards and leaves the last one unnumbered.
      expect(row.envelope_to).toEqual(Array.from({ length: SMTP_SOURCE_RECIPIENTS }, (_, i) => `${SMTP_SOURCE_RECIPIENTS - i === 1 ? '' : SMTP_SOURCE_RECIPIENTS - i}peer@postern.test`));
    }
  });
});
