// Unrecorded outcomes and a /metrics that must not hang: PostgreSQL goes away while ONE engine stays alive.
//   - stopped for 30 s (docker stop) mid-delivery, longer than the lease: the sends whose outcomes
//     could not be recorded are recorded when it returns — the engine does not take its own
//     expired leases back and send them again. Every delivery accounted for, none twice.
//   - paused (docker pause: a hang, not a refusal): /metrics still answers at once, from the
//     background sample, whose age grows.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { type DedicatedPostgres, pauseContainer, startDedicatedPostgres, waitFor } from '../harness/index.ts';
import { metricValue, queueDelivery, startTestEngine, unique } from './helpers/engine.ts';
import { type SlowSink, startSlowSink } from './helpers/slow-sink.ts';

const run = promisify(execFile);

let database: DedicatedPostgres;
let pool: pg.Pool;
let engine: Engine;
let sink: SlowSink;

beforeAll(async () => {
  database = await startDedicatedPostgres();
  pool = new pg.Pool({ connectionString: database.dsn, max: 2 });
  pool.on('error', () => {});
  sink = await startSlowSink();
  // Slow enough that sends are in flight when the database goes away.
  sink.setReplyDelay(200);
  engine = await startTestEngine(database.dsn, {
    MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`,
    MAIL_SMTP_TIMEOUT: '1s',
    MAIL_WATCHDOG_STALL_THRESHOLD: '3s',
    // Shorter than the outage: every lease held when the database stopped has expired by the time
    // it returns.
    MAIL_LEASE_DURATION: '12s',
    MAIL_ATTEMPT_WORKER_CONCURRENCY: '4',
    MAIL_POSTGRES_CONNECT_TIMEOUT: '1s',
    MAIL_POSTGRES_STATEMENT_TIMEOUT: '10s',
  });
}, 180_000);

afterAll(async () => {
  await run('docker', ['unpause', database.container.getId()]).catch(() => {});
  await engine?.stop();
  await pool?.end();
  await sink?.close();
  await database?.close();
});

async function scrape(): Promise<string> {
  // A Prometheus scrape times out; 3 s leaves room for a loaded test machine, and is far below
  // the statement timeout (10 s) a scrape waiting for PostgreSQL would take.
  const response = await fetch(`http://${engine.http?.host}:${engine.http?.port}/metrics`, { signal: AbortSignal.timeout(3_000) });
  expect(response.status).toBe(200);
  return response.text();
}

describe('PostgreSQL away, the engine alive', () => {
  it('(c) stopped 30 s during delivery: every delivery sent exactly once, the unrecorded sends recorded afterwards', async () => {
    const recipients = Array.from({ length: 80 }, (_, i) => unique(`away-${i}`));
    for (const recipient of recipients) await queueDelivery(pool, { recipient });
    const atSink = () => recipients.filter((recipient) => (sink.accepted.get(recipient) ?? 0) > 0).length;
    await waitFor('the run to be under way', atSink, (n) => n >= 5, { timeoutMs: 30_000 });
    await database.stop();
    const sentBeforeReturn = atSink();
    expect(sentBeforeReturn).toBeLessThan(recipients.length);
    await new Promise((resolve) => setTimeout(resolve, 30_000)); // the outage itself, not a wait for state
    await database.start();

    const { rows } = await waitFor(
      'every delivery recorded as sent',
      () => pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status'),
      (result) => result.rows.length === 1 && result.rows[0]?.status === 'sent',
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    expect(rows[0]?.n).toBe(recipients.length);
    expect(recipients.map((recipient) => sink.accepted.get(recipient) ?? 0)).toEqual(recipients.map(() => 1));
    const { rows: attempts } = await pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.attempts GROUP BY status');
    expect(attempts).toEqual([{ status: 'sent', n: recipients.length }]);
  }, 300_000);

  it('/metrics answers while PostgreSQL hangs (docker pause), from a sample whose age grows', async () => {
    await waitFor('a sample of the empty queue', async () => metricValue(await scrape(), 'mail_attempt_schedule_depth'), (depth) => depth === 0, {
      timeoutMs: 30_000,
      intervalMs: 250,
    });
    await pauseContainer(database.container.getId());
    try {
      // The sampler's own query now hangs; scrapes do not wait for it.
      const first = metricValue(await scrape(), 'mail_attempt_schedule_sample_age_ms');
      const later = await waitFor(
        'the sample to age past 3 s',
        async () => metricValue(await scrape(), 'mail_attempt_schedule_sample_age_ms'),
        (age) => age > 3_000,
        { timeoutMs: 20_000, intervalMs: 500 },
      );
      expect(later).toBeGreaterThan(first);
      expect(metricValue(await scrape(), 'mail_attempt_schedule_depth')).toBe(0);
    } finally {
      await run('docker', ['unpause', database.container.getId()]);
    }
    await waitFor(
      'a fresh sample after the pause',
      async () => metricValue(await scrape(), 'mail_attempt_schedule_sample_age_ms'),
      (age) => age < 3_000,
      { timeoutMs: 30_000, intervalMs: 500 },
    );
  }, 90_000);
});
