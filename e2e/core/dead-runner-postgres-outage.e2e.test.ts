// dead-runner: the Mailman out-runner died when the database dropped during network maintenance, and
// nothing restarted it; 4k mails sat queued for two days. Here PostgreSQL is really stopped (docker
// stop) for 30 s in the middle of a run: the engine waits, its loops restart with backoff, it never
// exits, and every accepted delivery is sent once the database is back.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { type DedicatedPostgres, startDedicatedPostgres, waitFor } from '../harness/index.ts';
import { metricsText, metricValue, queueDelivery, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let database: DedicatedPostgres;
let pool: pg.Pool;
let engine: Engine;
let smtp: ScriptedSmtp;

beforeAll(async () => {
  database = await startDedicatedPostgres();
  pool = new pg.Pool({ connectionString: database.dsn, max: 2 });
  pool.on('error', () => {});
  smtp = await startScriptedSmtp();
  // Slow enough that the run is still going when the database goes away.
  smtp.setDelay(150);
  engine = await startTestEngine(database.dsn, {
    MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
    MAIL_ATTEMPT_WORKER_CONCURRENCY: '2',
    // Above the 2 s the sink takes per message while the database is being stopped (below), and
    // a whole send within the 30 s lease.
    MAIL_SMTP_TIMEOUT: '5s',
    MAIL_SMTP_SEND_DEADLINE: '20s',
    MAIL_POSTGRES_CONNECT_TIMEOUT: '1s',
    MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s',
  });
}, 180_000);

afterAll(async () => {
  await engine?.stop();
  await pool?.end();
  await smtp?.close();
  await database?.close();
});

describe('dead-runner: PostgreSQL stopped for 30 s in the middle of a run', () => {
  it('every accepted delivery is eventually sent and the engine never exited', async () => {
    const recipients = Array.from({ length: 60 }, (_, i) => unique(`outage-${i}`));
    for (const recipient of recipients) await queueDelivery(pool, { recipient });
    const sentCount = () => recipients.filter((recipient) => (smtp.accepted.get(recipient) ?? 0) > 0).length;
    await waitFor('the run to be under way', sentCount, (n) => n >= 5);
    // Slower still while `docker stop` takes effect: at 150 ms a message the other 55 were all sent
    // before it did at a load of 35-55 (the stop itself took seconds), and there was no run left
    // for the outage to interrupt. At 2 s, two workers send a few more at most.
    smtp.setDelay(2_000);
    await database.stop();
    const sentAtStop = sentCount();
    expect(sentAtStop).toBeLessThan(recipients.length);

    // 30 s without PostgreSQL: the engine answers /healthz, says not ready, and keeps trying.
    const base = `http://${engine.http?.host}:${engine.http?.port}`;
    const down = await waitFor('readiness to report the database', () => fetch(`${base}/readyz`).then((r) => r.status), (status) => status === 503);
    expect(down).toBe(503);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 30_000)); // the outage itself, not a wait for state
    await database.start();
    smtp.setDelay(150);

    await waitFor('every delivery at the sink', sentCount, (n) => n === recipients.length, { timeoutMs: 90_000, intervalMs: 250 });
    const { rows } = await waitFor(
      'every delivery recorded as sent',
      () => pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status'),
      (result) => result.rows.length === 1 && result.rows[0]?.status === 'sent',
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(rows[0]?.n).toBe(recipients.length);
    await waitFor('ready again', () => fetch(`${base}/readyz`).then((r) => r.status), (status) => status === 200, { timeoutMs: 30_000 });
    const text = await metricsText(engine);
    expect(metricValue(text, 'mail_loop_restarts_total{loop="scheduler"}')).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
