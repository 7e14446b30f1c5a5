// MAIL_SMTP_ADDR's relay written on raw Python sockets (helpers/raw-relay.py), no SMTP library on
// its side: replies that are not replies, replies cut off, connections closed or reset around the
// end of data, a reply dripped a byte a second, and sessions refused before any recipient. Each case
// ends with an account: what was queued is sent, failed, or still retrying with a named reason, and
// the relay's own count of what it read and what it answered 2xx to, by Message-ID.
// What was wrong before:
// - "2" alone, or a multi-line reply whose lines disagree ("250-yes" then "550 no"), after the data
//   was taken for an acceptance by its first character: recorded `sent` (the text "accepted") while
//   the relay may have refused it; the reverse order bounced a message the relay may have taken.
// - a reply dripped one byte a second, never finishing a line, beat no heartbeat: the watchdog
//   counted the worker stalled and restarted it, though the whole-send deadline cuts such a send.
// - MAIL_SMTP_ADDR's relay greeting 554 or refusing EHLO and HELO failed every queued delivery for
//   good and queued a bounce for each; a routed relay doing the same was already deferred.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, insertAcceptedMessage, metricsText, startTestEngine, waitForStatus } from './helpers/engine.ts';
import { messageIdOf, type RawRelay, type RawRelayStats, startRawRelay } from './helpers/raw-relay.ts';

let db: TestDatabase;
let relay: RawRelay;
let engine: Engine;

beforeAll(async () => {
  db = await createTestDatabase('core-raw-relay');
  relay = await startRawRelay();
  // One attempt per case (the next one waits an hour). Command timeout 2 s; whole-send deadline
  // 20 s (10 x 2 s) is past the stall threshold (10 s, the helper's): a send that beats nothing for
  // 10 s is counted stalled.
  // A relay whose sessions fail is probed one send at a time (relay/relay-health.ts): with no
  // backoff and a short deferral, each refused delivery still gets its one attempt within seconds.
  engine = await startTestEngine(db.dsn, {
    MAIL_SMTP_ADDR: `${relay.host}:${relay.port}`,
    MAIL_SMTP_TIMEOUT: '2s',
    MAIL_RETRY_LADDER: '1h',
    MAIL_SHAPING_BACKOFF: '0s',
    MAIL_SHAPING_DEFER: '200ms',
  });
});

afterAll(async () => {
  await engine?.stop();
  await relay?.close();
  await db?.drop();
});

const queue = async (rule: string, n = 1) => (await insertAcceptedMessage(db.pool, `sender-${rule}-${n}@outside.test`, `${rule}-${n}@inbox.test`)).deliveryId;

async function loopTroubles(): Promise<string[]> {
  return (await metricsText(engine)).split('\n').filter((line) => /^mail_(loop_stalls|loop_restarts|poison_items)_total\{.* [1-9]/.test(line));
}

async function bouncesQueued(): Promise<number> {
  return (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE source = 'postern-dsn'")).rows[0]?.n ?? -1;
}

describe('the relay answers the end of data with something that is not an acceptance', () => {
  // rule -> delivery status, attempt status, smtp_code, text; all single attempts.
  const cases: Array<[string, string, string, number | null, RegExp]> = [
    // Not replies: the data went out, what the relay did with it is unknown.
    ['dottwo', 'retrying', 'outcome_unknown', null, /^EPROTOCOL: Malformed reply to the end of data \(no reply code\): "2"$/],
    ['dotmixed', 'retrying', 'outcome_unknown', null, /^EPROTOCOL: Malformed reply to the end of data \(its lines disagree on the code\): "250-2\.0\.0 first line says yes\\n550 5\.7\.1 last line says no"$/],
    ['dotmixedrev', 'retrying', 'outcome_unknown', null, /^EPROTOCOL: Malformed reply to the end of data \(its lines disagree on the code\): "550-5\.7\.1 first line says no\\n250 2\.0\.0 last line says yes"$/],
    ['dotbarelf', 'retrying', 'outcome_unknown', null, /^EPROTOCOL: Malformed reply to the end of data \(a line ended by a bare LF\): "250 2\.0\.0 queued\\n550 5\.7\.1 no"$/],
    // Held before: a bare code is a reply; an acceptance followed by a closed connection is sent.
    ['dotbare', 'sent', 'sent', 250, /^250$/],
    ['dotokclose', 'sent', 'sent', 250, /^250 2\.0\.0 queued, and gone$/],
    // Cut off, closed, reset, 10 MiB without a line end: outcome unknown, bounded text.
    ['dotcontclose', 'retrying', 'outcome_unknown', null, /^ECONNECTION: Connection closed unexpectedly$/],
    ['dotconthang', 'retrying', 'outcome_unknown', null, /^ETIMEDOUT: Timeout$/],
    ['dotclose', 'retrying', 'outcome_unknown', null, /^ECONNECTION: Connection closed unexpectedly$/],
    ['dotreset', 'retrying', 'outcome_unknown', null, /ECONNRESET/],
    ['dotnonl', 'retrying', 'outcome_unknown', null, /^EPROTOCOL: Server response exceeds maximum allowed size$/],
    // A byte a second, never a line end: cut by the whole-send deadline, no stall on the way.
    ['dotdrip', 'retrying', 'outcome_unknown', null, /^ETIMEDOUT: whole-send deadline of 20000 ms passed/],
  ];

  it('each is recorded for what it is, none sent twice, no bounce, no stalled loop', async () => {
    const ids = new Map<string, string>();
    for (const [rule] of cases) ids.set(rule, await queue(rule));
    for (const [rule, status, attemptStatus, code, text] of cases) {
      const id = ids.get(rule) as string;
      await waitForStatus(db.pool, id, status, 40_000);
      const attempts = await attemptsOf(db.pool, id);
      expect({ rule, attempts: attempts.map(({ status, smtp_code }) => ({ status, smtp_code })) }).toEqual({ rule, attempts: [{ status: attemptStatus, smtp_code: code }] });
      expect({ rule, text: attempts[0]?.smtp_text ?? '' }).toEqual({ rule, text: expect.stringMatching(text) });
      expect((attempts[0]?.smtp_text ?? '').length).toBeLessThanOrEqual(1_000);
    }
    // The account: 12 queued = 2 sent + 10 retrying (outcome_unknown); nothing failed, no bounce.
    const { rows } = await db.pool.query<{ status: string; n: number }>(
      "SELECT status, count(*)::int AS n FROM mail.deliveries WHERE source <> 'postern-dsn' GROUP BY status ORDER BY status",
    );
    expect(rows).toEqual([
      { status: 'retrying', n: 10 },
      { status: 'sent', n: 2 },
    ]);
    expect(await bouncesQueued()).toBe(0);
    // At the relay: each message read exactly once (the one attempt), none twice.
    const stats: RawRelayStats = await relay.stats();
    for (const [rule] of cases) expect({ rule, received: stats.received[await messageIdOf(db.pool, ids.get(rule) as string)] }).toEqual({ rule, received: 1 });
    expect(await loopTroubles()).toEqual([]);
  }, 120_000);
});

describe("MAIL_SMTP_ADDR's relay refuses the session", () => {
  it.each([
    ['greet554', /554 5\.7\.1 no SMTP service for you/],
    ['ehlo550', /550 5\.7\.1 you may not/],
    ['greet421', /421 4\.3\.2 too busy, go away/],
    ['ehlomixed', /^EPROTOCOL: Malformed reply \(its lines disagree on the code\): "250-raw\.test\\n550 5\.7\.1 you may not"$/],
  ])('%s: every delivery waits on the ladder with the refusal in its text, none fails, no bounce', async (mode, text) => {
    await relay.setMode(mode);
    try {
      const before = (await relay.stats()).received;
      const ids = await Promise.all([1, 2, 3].map((n) => queue(mode, n)));
      for (const id of ids) {
        // Its attempt, not a deferral while another send probes the relay.
        const attempts = await waitFor(`an attempt of ${id}`, () => attemptsOf(db.pool, id), (rows) => rows.length > 0, { timeoutMs: 15_000 });
        await waitForStatus(db.pool, id, 'retrying', 15_000);
        expect(attempts).toMatchObject([{ attempt_number: 1, status: 'transport_failed', smtp_code: null }]);
        expect(attempts[0]?.smtp_text).toMatch(text);
      }
      expect(await bouncesQueued()).toBe(0);
      expect((await relay.stats()).received).toEqual(before);
    } finally {
      await relay.setMode('normal');
    }
  });

  it('starttlshang: a TLS handshake never answered ends within the command timeout', async () => {
    await relay.setMode('starttlshang');
    try {
      const id = await queue('starttlshang');
      await waitForStatus(db.pool, id, 'retrying', 15_000);
      expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'timed_out', smtp_code: null, smtp_text: 'ETIMEDOUT: TLS handshake timed out' }]);
    } finally {
      await relay.setMode('normal');
    }
    // The relay is fine again: mail goes out on a fresh session.
    const after = await queue('afterwards');
    await waitForStatus(db.pool, after, 'sent', 15_000);
    expect(await loopTroubles()).toEqual([]);
  });
});

describe('the relay answers MAIL FROM, RCPT TO or DATA with something that is not a reply', () => {
  // Before (nodemailer read a reply by its first character, and a line after a bare LF as the next
  // reply): "250-yes" then "550 no such user" to RCPT TO went on to DATA and was sent; "250 ok<LF>550
  // no" to MAIL FROM gave the 550 to RCPT TO and failed the delivery for good, with a bounce.
  // Now each is a protocol error: the session is closed before the data, the delivery retried.
  // rule -> text of its one attempt (transport_failed, no code, nothing read by the relay).
  const malformed: Array<[string, RegExp]> = [
    ['mailmixed', /^EPROTOCOL: Malformed reply \(its lines disagree on the code\): "250-2\.1\.0 first line says yes\\n550 5\.7\.1 last line says no"$/],
    ['mailbarelf', /^EPROTOCOL: Malformed reply \(a line ended by a bare LF\): ".*250 2\.1\.0 ok\\n550 5\.7\.1 no.*"$/],
    ['rcptmixed', /^EPROTOCOL: Malformed reply \(its lines disagree on the code\): "250-2\.1\.5 first line says yes\\n550 5\.1\.1 last line says no such user"$/],
    ['rcptmixedrev', /^EPROTOCOL: Malformed reply \(its lines disagree on the code\): "550-5\.1\.1 first line says no such user\\n250 2\.1\.5 last line says yes"$/],
    ['rcptbarelf', /^EPROTOCOL: Malformed reply \(a line ended by a bare LF\): ".*250 2\.1\.5 ok\\n550 5\.1\.1 no such user.*"$/],
    ['rcptcodeless', /^EPROTOCOL: Malformed reply \(a line without the code\): "250-2\.1\.5 ok\\nno code on this line"$/],
    ['datamixed', /^EPROTOCOL: Malformed reply \(its lines disagree on the code\): "354-go ahead\\n554 5\.5\.1 no valid recipients"$/],
    ['databarelf', /^EPROTOCOL: Malformed reply \(a line ended by a bare LF\): ".*354 go ahead\\n554 5\.5\.1 no valid recipients.*"$/],
  ];

  it('each is a temporary protocol error: one attempt, retrying, never sent, nothing failed, no bounce, no data read', async () => {
    const before = (await relay.stats()).received;
    const ids = new Map<string, string>();
    for (const [rule] of malformed) ids.set(rule, await queue(rule));
    // A well-formed reply with a NUL and bytes that are not UTF-8: stored, NUL and all, safely.
    const nul = await queue('rcptnul');
    const dotnul = await queue('dotnul');
    for (const [rule, text] of malformed) {
      const id = ids.get(rule) as string;
      const row = await waitForStatus(db.pool, id, 'retrying', 40_000);
      const attempts = await attemptsOf(db.pool, id);
      expect({ rule, attempts: attempts.map(({ status, smtp_code }) => ({ status, smtp_code })) }).toEqual({ rule, attempts: [{ status: 'transport_failed', smtp_code: null }] });
      expect({ rule, text: attempts[0]?.smtp_text ?? '' }).toEqual({ rule, text: expect.stringMatching(text) });
      expect({ rule, lastError: row?.last_error }).toEqual({ rule, lastError: `malformed_reply: ${attempts[0]?.smtp_text}` });
    }
    const nulRow = await waitForStatus(db.pool, nul, 'retrying', 40_000);
    const nulAttempts = await attemptsOf(db.pool, nul);
    expect(nulAttempts).toMatchObject([{ status: 'transport_failed', smtp_code: 450 }]);
    // NUL -> U+2400; the bytes that are not UTF-8 arrive as nodemailer keeps them (one character a byte).
    expect(nulAttempts[0]?.smtp_text).toBe('450 4.2.0 busy\u2400right now \u00ff\u00fe\u00c3 come back');
    expect(nulRow?.last_error).toBe('transient: 450 4.2.0 busy\u2400right now \u00ff\u00fe\u00c3 come back (reply to RCPT TO)');
    await waitForStatus(db.pool, dotnul, 'sent', 40_000);
    expect(await attemptsOf(db.pool, dotnul)).toMatchObject([{ status: 'sent', smtp_code: 250, smtp_text: '250 2.0.0 queued\u2400as \u00ff\u00fe\u00c3 X' }]);
    // The account of these ten: nine retrying, one sent; no bounce; the relay read only dotnul's data.
    const all = [...ids.values(), nul, dotnul];
    const { rows } = await db.pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries WHERE id = ANY($1::uuid[]) GROUP BY status ORDER BY status', [all]);
    expect(rows).toEqual([
      { status: 'retrying', n: 9 },
      { status: 'sent', n: 1 },
    ]);
    expect(await bouncesQueued()).toBe(0);
    const after = (await relay.stats()).received;
    const read = Object.keys(after).filter((key) => after[key] !== before[key]);
    expect(read).toEqual([await messageIdOf(db.pool, dotnul)]);
    expect(await loopTroubles()).toEqual([]);
  }, 120_000);
});

describe('a 552 reply: temporary to RCPT TO (RFC 5321 4.5.3.1.10), permanent to the end of data', () => {
  it('552 to RCPT TO waits on the ladder and says why; 552 5.3.4 to the end of data fails with a bounce', async () => {
    // Before: "552 5.5.3 too many recipients" to RCPT TO failed the delivery for good and bounced it.
    const rcpt = await queue('rcpt552');
    const full = await queue('rcpt552full');
    const tooLarge = await queue('dot552');
    expect((await waitForStatus(db.pool, rcpt, 'retrying', 40_000))?.last_error).toBe('too_many_recipients: 552 5.5.3 too many recipients (reply to RCPT TO)');
    expect(await attemptsOf(db.pool, rcpt)).toMatchObject([{ status: 'transport_failed', smtp_code: 552, smtp_text: '552 5.5.3 too many recipients' }]);
    expect((await waitForStatus(db.pool, full, 'retrying', 40_000))?.last_error).toBe('mailbox_full: 552 5.2.2 mailbox full (reply to RCPT TO)');
    expect((await waitForStatus(db.pool, tooLarge, 'failed', 40_000))?.last_error).toBe('message_too_large: 552 5.3.4 Message size exceeds fixed limit (reply to the end of data)');
    expect(await attemptsOf(db.pool, tooLarge)).toMatchObject([{ status: 'provider_rejected', smtp_code: 552 }]);
    // The account: the two refused at RCPT TO were never read by the relay; one bounce, for the message too large.
    const stats = await relay.stats();
    expect(stats.received[await messageIdOf(db.pool, rcpt)]).toBeUndefined();
    expect(stats.received[await messageIdOf(db.pool, full)]).toBeUndefined();
    expect(stats.received[await messageIdOf(db.pool, tooLarge)]).toBe(1);
    expect(await bouncesQueued()).toBe(1);
  }, 120_000);
});
