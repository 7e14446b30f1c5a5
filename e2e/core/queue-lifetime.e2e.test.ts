// The queue lifetime (MAIL_QUEUE_LIFETIME, docs/core.md "The queue lifetime") against real
// PostgreSQL: mail for a relay that stays backed off is deferred without an attempt and without
// spending the ladder, so before the lifetime it waited for ever — never dead-lettered, never
// bounced. Now a delivery that would be deferred again after the lifetime ends as a dead letter (its
// dead-letter row written although it has no attempt) with a 4.4.7 bounce to its sender, and an
// operator's requeue of it starts a new lifetime instead of dead-lettering it at its next deferral.
// The lifetime is the default (120h): the test moves queued_since back rather than waiting for it.
import { ANY_DEAD_LETTER, requeueDeadLetters } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, metricsText, metricValue, startTestEngine } from './helpers/engine.ts';
import { startSilentRelay } from './helpers/smtp-servers.ts';

const DEAD = 8;

let db: TestDatabase;
let dead: Awaited<ReturnType<typeof startSilentRelay>>;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-queue-lifetime');
  dead = await startSilentRelay();
});

afterAll(async () => {
  await engine?.stop();
  await dead?.close();
  await db?.drop();
});

interface Row {
  id: string;
  status: string;
  attempt_count: number;
  last_error: string | null;
  attempts: number;
  dead_letter_reason: string | null;
}

async function rows(ids: readonly string[]): Promise<Row[]> {
  const { rows: found } = await db.pool.query<Row>(
    `SELECT d.id, d.status, d.attempt_count, d.last_error,
            (SELECT count(*)::int FROM mail.attempts a WHERE a.delivery_id = d.id) AS attempts,
            (SELECT dl.reason FROM mail.dead_letters dl WHERE dl.delivery_id = d.id AND dl.requeued_at IS NULL) AS dead_letter_reason
       FROM mail.deliveries d WHERE d.id = ANY($1::uuid[]) ORDER BY d.id`,
    [ids],
  );
  return found;
}

/** Deliveries deferred without ever being attempted because the relay is backed off (their wait is
 *  the rest of its ten-minute backoff: no engine claims them meanwhile). */
const BACKED_OFF_SQL = `SELECT d.id FROM mail.deliveries d
  WHERE d.source = 'smtp' AND d.status = 'retrying' AND d.last_error LIKE 'deferred: relay % is backed off%'
    AND NOT EXISTS (SELECT 1 FROM mail.attempts a WHERE a.delivery_id = d.id)`;

async function backedOffIds(): Promise<string[]> {
  const { rows: found } = await db.pool.query<{ id: string }>(BACKED_OFF_SQL);
  return found.map((row) => row.id);
}

async function backedOffCount(): Promise<number> {
  return (await backedOffIds()).length;
}

describe('a relay backed off for longer than the queue lifetime', () => {
  it('its deferred mail is dead-lettered and bounced (4.4.7), and a requeue starts a new lifetime', async () => {
    for (let n = 0; n < DEAD; n++) await insertAcceptedMessage(db.pool, `sender-${n}@outside.test`, `rcpt-${n}@dead.test`);
    const relayKey = `127.0.0.1:${dead.port}`;
    engine = await startTestEngine(db.dsn, {
      MAIL_SMTP_ADDR: relayKey,
      // One attempt each: a second one would wait an hour (the ladder is not what ends them here).
      MAIL_RETRY_LADDER: '1h',
      // Backed off for ten minutes after its probe fails: every send meanwhile is deferred.
      MAIL_SHAPING_BACKOFF: '10m',
    });
    const running = engine;
    const site = `site="${relayKey}"`;
    await waitFor('the silent relay to be backed off', async () => metricValue(await metricsText(running), `mail_site_backoffs_total{${site}}`), (n) => n >= 1, {
      timeoutMs: 120_000,
      intervalMs: 200,
    });
    await waitFor('deliveries deferred without an attempt', backedOffCount, (n) => n >= 1, { timeoutMs: 60_000, intervalMs: 200 });

    // They have been in the queue for longer than the lifetime (120h), and are due now.
    const { rows: moved } = await db.pool.query<{ id: string; attempt_count: number }>(
      `UPDATE mail.deliveries d SET queued_since = now() - interval '121 hours', next_attempt_at = now()
        WHERE d.id = ANY($1::uuid[]) RETURNING d.id, d.attempt_count`,
      [await backedOffIds()],
    );
    const deferred = moved.map((row) => row.id).sort();
    const before = new Map(moved.map((row) => [row.id, row.attempt_count]));
    const ended = await waitFor('the deferred deliveries to be dead-lettered', () => rows(deferred), (found) => found.every((row) => row.status === 'dead_letter'), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    for (const row of ended) {
      // No attempt was made, none recorded; the claim's number was given back.
      expect(row.attempts).toBe(0);
      expect(row.attempt_count).toBe(before.get(row.id));
      expect(row.last_error).toMatch(new RegExp(`^in the queue since .+, longer than MAIL_QUEUE_LIFETIME \\(120h\\) without being sent; last: deferred: relay ${relayKey.replaceAll('.', '\\.')} is backed off`));
      // The dead-letter row exists though there is no attempt: the operator sees it and can requeue it.
      expect(row.dead_letter_reason).toBe(row.last_error);
    }
    const text = await metricsText(running);
    expect(metricValue(text, 'mail_delivery_expired_total{waited_for="deferred"}')).toBe(deferred.length);
    expect(metricValue(text, 'mail_delivery_dead_letters_total')).toBe(deferred.length);

    // One bounce per ended delivery, to its sender, saying the delivery time expired.
    const { rows: bounces } = await db.pool.query<{ recipient: string; raw: Buffer }>(
      `SELECT d.recipient, p.raw FROM mail.deliveries d JOIN mail.message_payloads p ON p.message_id = d.message_id
        WHERE d.source = 'postern-dsn'`,
    );
    expect(bounces).toHaveLength(deferred.length);
    for (const bounce of bounces) {
      expect(bounce.recipient).toMatch(/^sender-\d+@outside\.test$/);
      expect(bounce.raw.toString()).toContain('Status: 4.4.7');
    }

    // The operator requeues one: it starts a new lifetime, so the next deferral puts it back to
    // wait instead of dead-lettering it again at once.
    const [requeued] = await requeueDeadLetters(db.pool, { filter: ANY_DEAD_LETTER, deliveryId: deferred[0] ?? null, max: 1, requeuedBy: 'e2e' });
    expect(requeued).toBe(deferred[0]);
    const [again] = await waitFor(
      'the requeued delivery to be claimed and deferred again',
      () => rows([requeued as string]),
      (found) => found[0]?.status !== 'queued' && found[0]?.status !== 'sending',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(again).toMatchObject({ status: 'retrying', attempts: 0 });
    expect(again?.last_error).toMatch(/^deferred: relay .* is backed off/);
    const { rows: since } = await db.pool.query<{ age_s: number }>('SELECT extract(epoch FROM now() - queued_since)::float8 AS age_s FROM mail.deliveries WHERE id = $1', [requeued]);
    expect(since[0]?.age_s).toBeLessThan(3_600);
  }, 240_000);
});
