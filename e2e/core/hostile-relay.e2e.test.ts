// What a relay says back is hostile input. A relay on raw TCP (helpers/hostile-relay.ts) answers what
// smtp-server never would, and every answer must end its own delivery for a recorded reason while the
// rest of the mail goes out:
// - a refusal followed by a connection that closes or falls silent: the refusal is the attempt's
//   outcome, at once. (The relay's RSET after a refused transaction waited on a callback nodemailer
//   drops when the connection closes: the send never returned, the watchdog abandoned the worker,
//   and the reclaim turned a 550 into outcome_unknown and retried it.)
// - a relay that closes the connection or falls silent after AUTH: the attempt ends with that,
//   within the command timeout. (nodemailer drops the AUTH callback the same way, and the relay's
//   session setup stopped listening for errors once the greeting was in: the send waited for the
//   whole-send deadline, which is longer than the stall threshold, and the watchdog took the worker.)
// - reply text with NUL, invalid UTF-8, CESU-8 surrogate bytes, a bare CR, escape sequences, a
//   1 MiB line, 10 MiB, 100,000 lines, codes outside 2xx-5xx: stored bounded and storable in the
//   attempt, last_error and the bounce, logged bounded, never a poison item or a restarted loop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { type CapturedLogs, captureLogs, createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, insertAcceptedMessage, metricsText, startTestEngine, waitForStatus } from './helpers/engine.ts';
import { type HostileRelay, type ReplyRule, startHostileRelay } from './helpers/hostile-relay.ts';

const MiB = 1024 * 1024;
const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : Buffer.from(part))));

// The recipient's local part names its rule: `<rule>-<n>@inbox.test`.
const RULES: Record<string, ReplyRule> = {
  rcptclose: { at: 'rcpt', reply: bytes('550 5.1.1 no such user\r\n'), afterwards: 'close' },
  rcptsilent: { at: 'rcpt', reply: bytes('550 5.1.1 no such user\r\n'), afterwards: 'ignore' },
  dotclose: { at: 'dot', reply: bytes('554 5.7.1 rejected as spam\r\n'), afterwards: 'close' },
  dotsilent: { at: 'dot', reply: bytes('451 4.3.0 try again later\r\n'), afterwards: 'ignore' },
  nul: { at: 'dot', reply: bytes('550 5.7.1 no\u0000pe\r\n') },
  badutf8: { at: 'dot', reply: bytes('550 5.7.1 bad ', [0xff, 0xfe, 0xc3, 0x28], '\r\n') },
  cesu: { at: 'rcpt', reply: bytes('550 5.1.1 ', [0xed, 0xa0, 0x80], ' user\r\n') },
  barecr: { at: 'dot', reply: bytes('550 5.7.1 bare\rCR\r\n') },
  ansi: { at: 'rcpt', reply: bytes('550 5.1.1 \u001b[2J\u001b[31mred\u001b[0m\r\n') },
  mebibyte: { at: 'dot', reply: bytes(`550 5.7.1 ${'A'.repeat(MiB - 100)}\r\n`) },
  tenmebibytes: { at: 'dot', reply: bytes(`550 5.7.1 ${'A'.repeat(10 * MiB)}\r\n`) },
  manylines: { at: 'dot', reply: bytes(`${'550-5.7.1 x\r\n'.repeat(60_000)}550 5.7.1 end\r\n`) },
  toomanylines: { at: 'dot', reply: bytes(`${'550-5.7.1 line\r\n'.repeat(99_999)}550 5.7.1 end\r\n`) },
  code600: { at: 'dot', reply: bytes('600 what\r\n') },
  code099: { at: 'rcpt', reply: bytes('099 what\r\n') },
  nulsent: { at: 'dot', reply: bytes('250 2.0.0 ok\u0000queued\r\n') },
};

let db: TestDatabase;
let relay: HostileRelay;
let engine: Engine;
let logs: CapturedLogs;

beforeAll(async () => {
  db = await createTestDatabase('core-hostile-relay');
  relay = await startHostileRelay(RULES);
  logs = captureLogs('core', 'info');
  // A retried delivery waits an hour: each case is one attempt. Stall threshold 10 s (the helper's).
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `${relay.host}:${relay.port}`, MAIL_SMTP_TIMEOUT: '2s', MAIL_RETRY_LADDER: '1h' }, { logger: logs.logger });
});

afterAll(async () => {
  await engine?.stop();
  await relay?.close();
  await db?.drop();
});

async function queue(rule: string, n: number): Promise<string> {
  return (await insertAcceptedMessage(db.pool, `sender-${rule}-${n}@outside.test`, `${rule}-${n}@inbox.test`)).deliveryId;
}

async function ordinaryMailGoesOut(): Promise<void> {
  const { deliveryId } = await insertAcceptedMessage(db.pool, 'sender@outside.test', `ordinary-${Date.now()}@inbox.test`);
  await waitForStatus(db.pool, deliveryId, 'sent', 15_000);
}

async function loopTroubles(): Promise<string[]> {
  return (await metricsText(engine)).split('\n').filter((line) => /^mail_(loop_stalls|loop_restarts|poison_items)_total\{.* [1-9]/.test(line));
}

/** The bounce queued for a delivery's sender, as the bytes that will be sent. */
async function bounceTo(sender: string): Promise<Buffer> {
  const { rows } = await db.pool.query<{ raw: Buffer }>(
    `SELECT p.raw FROM mail.deliveries d JOIN mail.message_payloads p ON p.message_id = d.message_id
      WHERE d.source = 'postern-dsn' AND d.recipient = $1`,
    [sender],
  );
  expect(rows).toHaveLength(1);
  return (rows[0] as { raw: Buffer }).raw;
}

describe('a relay that refuses and then closes the connection or falls silent', () => {
  // Each must be recorded well inside the 2 s command timeout plus a little: on main the send never
  // returned and the delivery sat in `sending` until the watchdog and the lease reclaim came.
  it.each([
    ['rcptclose', 'failed', 'provider_rejected', 550],
    ['rcptsilent', 'failed', 'provider_rejected', 550],
    ['dotclose', 'failed', 'provider_rejected', 554],
    ['dotsilent', 'retrying', 'transport_failed', 451],
  ])('%s: the refusal is the outcome, at once', async (rule, status, attemptStatus, code) => {
    const id = await queue(rule, 1);
    await waitForStatus(db.pool, id, status, 6_000);
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: attemptStatus, smtp_code: code }]);
    await ordinaryMailGoesOut();
    expect(await loopTroubles()).toEqual([]);
  });
});

describe('a relay that closes the connection or falls silent after AUTH', () => {
  it.each([
    ['hang', 'timed_out', /^ETIMEDOUT: /],
    ['close', 'transport_failed', /^ECONNECTION: Connection closed unexpectedly/],
  ] as const)('AUTH answered by %s: the attempt ends within the command timeout, no stall', async (mode, attemptStatus, text) => {
    const authRelay = await startHostileRelay({});
    authRelay.setEhlo(bytes('250-hostile.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n'));
    authRelay.setAuth(mode);
    const authDb = await createTestDatabase(`core-hostile-auth-${mode}`);
    // The whole-send deadline (10 x 2 s) is past the stall threshold (10 s): waiting for it is a stall.
    const authEngine = await startTestEngine(authDb.dsn, {
      MAIL_SMTP_ADDR: `${authRelay.host}:${authRelay.port}`,
      MAIL_SMTP_TIMEOUT: '2s',
      MAIL_SMTP_USERNAME: 'postern',
      MAIL_SMTP_PASSWORD: 'secret',
      MAIL_RETRY_LADDER: '1h',
    });
    try {
      const { deliveryId } = await insertAcceptedMessage(authDb.pool, 'sender@outside.test', 'auth-1@inbox.test');
      await waitForStatus(authDb.pool, deliveryId, 'retrying', 6_000);
      const attempts = await attemptsOf(authDb.pool, deliveryId);
      expect(attempts).toMatchObject([{ attempt_number: 1, status: attemptStatus, smtp_code: null }]);
      expect(attempts[0]?.smtp_text).toMatch(text);
      const stalls = (await metricsText(authEngine)).split('\n').filter((line) => /^mail_loop_stalls_total\{.* [1-9]/.test(line));
      expect(stalls).toEqual([]);
    } finally {
      await authEngine.stop();
      await authRelay.close();
      await authDb.drop();
    }
  });
});

describe('reply text nobody should send', () => {
  it('each reply ends its own delivery for a stored, bounded reason; the rest goes out', async () => {
    const expected: Record<string, { status: string; attempt: string; code: number | null; text: RegExp }> = {
      nul: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.7\.1 no\u2400pe$/ },
      badutf8: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.7\.1 bad / },
      cesu: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.1\.1 .* user$/ },
      barecr: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.7\.1 bare CR$/ },
      ansi: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.1\.1 \ufffd\[2J\ufffd\[31mred\ufffd\[0m$/ },
      mebibyte: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.7\.1 A+/ },
      manylines: { status: 'failed', attempt: 'provider_rejected', code: 550, text: /^550 5\.7\.1 x 550-5\.7\.1 x / },
      // Past nodemailer's 1 MiB bound the connection is dropped after the data went out.
      tenmebibytes: { status: 'retrying', attempt: 'outcome_unknown', code: null, text: /^EPROTOCOL: Server response exceeds maximum allowed size$/ },
      toomanylines: { status: 'retrying', attempt: 'outcome_unknown', code: null, text: /^EPROTOCOL: Server response exceeds maximum allowed size$/ },
      // No SMTP code: after the data it may have been delivered; before it, a transport failure.
      code600: { status: 'retrying', attempt: 'outcome_unknown', code: null, text: /600 what/ },
      code099: { status: 'retrying', attempt: 'transport_failed', code: null, text: /099 what/ },
      nulsent: { status: 'sent', attempt: 'sent', code: 250, text: /^250 2\.0\.0 ok\u2400queued$/ },
    };
    const ids = new Map<string, string>();
    for (const rule of Object.keys(expected)) ids.set(rule, await queue(rule, 2));
    await ordinaryMailGoesOut();
    for (const [rule, want] of Object.entries(expected)) {
      const id = ids.get(rule) as string;
      const row = await waitForStatus(db.pool, id, want.status, 15_000);
      const attempts = await attemptsOf(db.pool, id);
      expect({ rule, attempts: attempts.map(({ status, smtp_code }) => ({ status, smtp_code })) }).toEqual({ rule, attempts: [{ status: want.attempt, smtp_code: want.code }] });
      const text = attempts[0]?.smtp_text ?? '';
      expect(text).toMatch(want.text);
      expect(text.length).toBeLessThanOrEqual(1_000);
      expect(row?.last_error?.length ?? 0).toBeLessThanOrEqual(1_000);
      if (want.status !== 'failed') continue;
      // The bounce quotes the reply one-line, without NUL or escape bytes, every line within RFC 5322's 998.
      const bounce = await bounceTo(`sender-${rule}-2@outside.test`);
      expect(bounce.includes(0x00) || bounce.includes(0x1b)).toBe(false);
      expect(Math.max(...bounce.toString('utf8').split('\r\n').map((line) => line.length))).toBeLessThanOrEqual(998);
      expect(bounce.toString('utf8')).toMatch(/^Diagnostic-Code: smtp; 5\d\d /m);
    }
    // Counted at the relay: what it answered 2xx to is what the engine recorded sent (bounces
    // included), each once.
    await waitFor(
      'the relay and the engine to agree on what was sent',
      async () => ({
        recorded: (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE status = 'sent'")).rows[0]?.n,
        accepted: [...relay.accepted.values()].reduce((sum, count) => sum + count, 0),
        twice: [...relay.accepted.values()].filter((count) => count > 1).length,
      }),
      (seen) => seen.recorded === seen.accepted && seen.twice === 0,
    );
    expect(await loopTroubles()).toEqual([]);
    // What the operator reads is bounded too: no log line carries a megabyte of reply.
    expect(Math.max(...logs.lines.map((line) => JSON.stringify(line).length))).toBeLessThan(8 * 1024);
  }, 60_000);
});
