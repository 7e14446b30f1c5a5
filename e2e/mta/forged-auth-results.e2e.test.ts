// Authentication-Results fields a sender wrote in our name (RFC 8601 5: a border MTA MUST delete
// the ones that appear to be its own ADMD's) are removed before the message is stored, and only
// they: sent by a client we did not write (Python's smtplib), stored, relayed by the engine to a
// capturing sink. Fields of other authserv-ids, ARC-Authentication-Results, look-alike names, the
// body and every other byte (8-bit, NUL, long lines) stay as sent; under MAIL_INBOUND_AUTH_POLICY=off
// too, where the edge writes no header of its own. Edge -> PostgreSQL -> engine -> capturing sink.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { createTestDatabase, metricSample, type TestDatabase, waitFor } from '../harness/index.ts';
import { type CapturingSink, startCapturingSink } from './helpers/capturing-sink.ts';
import { metricsText, startTestEdge, TEST_HOSTNAME } from './helpers/edge.ts';

let db: TestDatabase;
let annotate: Edge;
let off: Edge;
let engine: Engine;
let sink: CapturingSink;

beforeAll(async () => {
  db = await createTestDatabase('mta-forged-auth-results');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'desk', kind: 'forward', targets: ['desk@inbox.test'] });
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'quiet', kind: 'forward', targets: ['quiet@inbox.test'] });
  sink = await startCapturingSink({ smtpUtf8: true, eightBitMime: true });
  // The header cap raised past the default 256 KiB: one case puts a forged field after 300 KiB of header.
  annotate = await startTestEdge(db.dsn, { MAIL_INBOUND_AUTH_TIMEOUT: '3s', MAIL_MTA_MAX_HEADER_SIZE: '1MiB' });
  off = await startTestEdge(db.dsn, { MAIL_INBOUND_AUTH_POLICY: 'off', MAIL_MTA_MAX_HEADER_SIZE: '1MiB' });
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}` });
});

afterAll(async () => {
  await engine?.stop();
  await annotate?.stop();
  await off?.stop();
  await sink?.close();
  await db?.drop();
});

const FORGED = true;
const KEPT = false;
/** The header block as sent, field by field: which ones claim our authserv-id (mx.postern.test). */
const FIELDS: Array<[string, boolean]> = [
  ['Authentication-Results: mx.postern.test; dmarc=pass header.from=bank.test\r\n', FORGED],
  ['Received: from relay.outside.test by mx.outside.test; Sat, 28 Nov 2026 10:00:00 +0000\r\n', KEPT],
  ['Authentication-Results: other.test; dmarc=fail header.from=bank.test\r\n', KEPT],
  ['ARC-Authentication-Results: i=1; mx.postern.test; dmarc=pass\r\n', KEPT],
  ['authentication-results : MX.Postern.TEST (our name in any case);\r\n\tspf=pass smtp.mailfrom=bank.test;\r\n dkim=pass header.d=bank.test\r\n', FORGED],
  ['From: Bank <ceo@bank.test>\r\n', KEPT],
  ['Authentication-Results:\r\n (a comment (nested \\) one)) "mx.postern\\.test" 1; dkim=pass\r\n', FORGED],
  ['X-Authentication-Results: mx.postern.test; dmarc=pass\r\n', KEPT],
  ['Authentication-Results: mx.postern.test.evil.test; dmarc=pass\r\n', KEPT],
  ['Subject: caf\xe9 \x00 latin-1 and a NUL\r\n', KEPT],
  [`X-Long: ${'y'.repeat(980)}\r\n`, KEPT],
  ['Authentication-Results: mx.postern.test;none\r\n', FORGED],
  // Read as ours by lenient readers (mailauth's parser): escapes undone, the first part without "=".
  ['Authentication-Results: mx.postern\\.test; dmarc=pass\r\n', FORGED],
  ['Authentication-Results: dmarc=pass header.from=bank.test; mx.postern.test\r\n', FORGED],
  // The name folded before its colon: mailsplit (mailparser) still reads it as this field.
  ['Authentication-Results\r\n : mx.postern.test; dkim=pass\r\n', FORGED],
  ['To: desk@postern.test\r\n', KEPT],
  ['Authentication-Results: mx.postern.test(comment)\r\n ;arc=pass\r\n', FORGED],
  // Past 256 KiB of header (under a cap raised to 1 MiB): every field of the block counts.
  [`X-Pad: ${'p'.repeat(70)}\r\n`.repeat(4000), KEPT],
  ['Authentication-Results: mx.postern.test; dmarc=pass (after 300 KiB of header)\r\n', FORGED],
];
const BODY =
  '\r\nAuthentication-Results: mx.postern.test; dmarc=pass (in the body: not a header)\r\n' +
  '.a dot-led line\r\n\xff\xfe 8-bit bytes \x00 and a NUL\r\n' +
  `${'z'.repeat(5000)}\r\nend\r\n`;
const AS_SENT = Buffer.from(FIELDS.map(([field]) => field).join('') + BODY, 'latin1');
const WITHOUT_FORGED = Buffer.from(
  FIELDS.filter(([, forged]) => !forged)
    .map(([field]) => field)
    .join('') + BODY,
  'latin1',
);
const FORGED_FIELDS = FIELDS.filter(([, forged]) => forged).length;

/** The Authentication-Results fields of a header block, unfolded, in order: what a reader sees. */
function authResultsFields(message: Buffer): string[] {
  const text = message.toString('latin1');
  const header = text.slice(0, text.indexOf('\r\n\r\n') + 2).replace(/\r\n(?=[ \t])/g, '');
  return header.split('\r\n').filter((line) => /^authentication-results[ \t]*:/i.test(line));
}

function sendWithSmtplib(edge: Edge, to: string): Promise<{ code: number; text: string }> {
  const script = path.join(import.meta.dirname, 'peers', 'smtplib_peer.py');
  const args = {
    host: '127.0.0.1',
    port: edge.smtp.port,
    helo: 'forger.outside.test',
    transactions: [{ from: 'ceo@bank.test', to: [to], mailOptions: ['BODY=8BITMIME'], messageBase64: AS_SENT.toString('base64') }],
  };
  return new Promise((resolve, reject) => {
    // The message is past the limit of one argument: the peer reads its instructions from stdin.
    const child = execFile('python3', [script], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`smtplib peer failed: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout).transactions[0].data);
    });
    child.stdin?.end(JSON.stringify(args));
  });
}

async function storedRaw(reply: { code: number; text: string }): Promise<Buffer> {
  const id = /^2\.0\.0 queued as ([0-9a-f-]{36})$/.exec(reply.text)?.[1];
  if (reply.code !== 250 || !id) throw new Error(`not accepted: ${reply.code} ${reply.text}`);
  const { rows } = await db.pool.query<{ raw: Buffer }>('SELECT raw FROM mail.message_payloads WHERE message_id = $1', [id]);
  return rows[0]!.raw;
}

async function relayedTo(target: string): Promise<Buffer> {
  const message = await waitFor(`the relay to receive the message for ${target}`, () => sink.messages.find((m) => m.to.includes(target)), Boolean, {
    timeoutMs: 30_000,
  });
  return message!.raw;
}

const host = TEST_HOSTNAME.replace(/\./g, '\\.');
const TRACE = `Received: from forger\\.outside\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby ${host} \\(Postern\\) with ESMTP id [0-9a-f-]{36}\\r\\n\\tfor <[a-z]+@postern\\.test>;\\r\\n\\t[^\\r\\n]+\\r\\n`;

describe('Authentication-Results fields claiming our authserv-id', () => {
  it('are removed before the message is stored and relayed; every other byte is as sent', async () => {
    const raw = await storedRaw(await sendWithSmtplib(annotate, 'desk@postern.test'));
    const [own, ...others] = authResultsFields(raw);
    expect(own).toMatch(/^Authentication-Results: mx\.postern\.test;/);
    expect(others).toEqual(authResultsFields(WITHOUT_FORGED));
    // Ours on top, then the trace header, then the message as sent without the forged fields.
    expect(raw.subarray(raw.length - WITHOUT_FORGED.length).equals(WITHOUT_FORGED)).toBe(true);
    const ours = raw.subarray(0, raw.length - WITHOUT_FORGED.length).toString('latin1');
    expect(ours).toMatch(new RegExp(`^Authentication-Results: ${host};(?: none|(?:\\r\\n\\t[^\\r\\n]+)+)\\r\\n${TRACE}$`));
    expect(await relayedTo('desk@inbox.test')).toEqual(raw);
    expect(metricSample(await metricsText(annotate), 'mail_mta_forged_auth_results_removed_total')).toBe(FORGED_FIELDS);
  });

  it('are removed with MAIL_INBOUND_AUTH_POLICY=off too, where the edge writes none of its own', async () => {
    const raw = await storedRaw(await sendWithSmtplib(off, 'quiet@postern.test'));
    expect(authResultsFields(raw)).toEqual(authResultsFields(WITHOUT_FORGED));
    expect(raw.subarray(raw.length - WITHOUT_FORGED.length).equals(WITHOUT_FORGED)).toBe(true);
    expect(raw.subarray(0, raw.length - WITHOUT_FORGED.length).toString('latin1')).toMatch(new RegExp(`^${TRACE}$`));
    expect(await relayedTo('quiet@inbox.test')).toEqual(raw);
    expect(metricSample(await metricsText(off), 'mail_mta_forged_auth_results_removed_total')).toBe(FORGED_FIELDS);
  });
});
