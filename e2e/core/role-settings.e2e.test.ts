// Settings an operator puts on the role or the database, which every new session inherits, must not
// break the engine's own sessions: with `idle_session_timeout` set (to reap forgotten sessions) the
// server killed the engine's LISTEN session each time it had been idle that long, and every kill
// restarted the scheduler with a growing backoff (no claims during it, /readyz 503, the restart alert).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { adminDsn, createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, metricValue, queueDelivery, startTestEngine, unique, waitForStatus } from './helpers/engine.ts';

let db: TestDatabase;
let engine: Engine;

beforeAll(async () => {
  db = await createTestDatabase('core-role-settings');
  const admin = new pg.Client({ connectionString: adminDsn() });
  await admin.connect();
  try {
    await admin.query(`ALTER ROLE CURRENT_USER IN DATABASE ${pg.escapeIdentifier(db.name)} SET idle_session_timeout = '1s'`);
  } finally {
    await admin.end();
  }
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_MODE: 'stub' });
});

afterAll(async () => {
  await engine?.stop();
  await db?.drop();
});

describe('role settings', () => {
  it('idle_session_timeout on the role: the LISTEN session outlives it, the scheduler never restarts, a new delivery is claimed at once', async () => {
    const observer = new pg.Client({ connectionString: db.dsn });
    observer.on('error', () => {});
    await observer.connect();
    try {
      // The state that proves the setting no longer bites: the engine's LISTEN backend idle for
      // three times the timeout (with it in force, the server ends the session after 1 s).
      await waitFor(
        "the engine's LISTEN session idle for 3 s",
        async () =>
          (
            await observer.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'postern-core'
                  AND query = 'LISTEN mail_delivery_due' AND state = 'idle' AND now() - state_change > interval '3 seconds'`,
            )
          ).rows[0]?.n ?? 0,
        (n) => n === 1,
        { timeoutMs: 15_000, intervalMs: 200 },
      );
    } finally {
      await observer.end().catch(() => {});
    }
    expect(metricValue(await metricsText(engine), 'mail_loop_restarts_total{loop="scheduler"}')).toBe(0);
    const id = await queueDelivery(db.pool, { recipient: unique('idle-session'), category: 'notification' });
    expect(await waitForStatus(db.pool, id, 'sent', 10_000)).toBeDefined();
  }, 60_000);
});
