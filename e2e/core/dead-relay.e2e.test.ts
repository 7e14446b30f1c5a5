// MAIL_SMTP_ADDR's relay accepts TCP and never greets, while a routed relay is healthy: the routed
// domain's mail must not wait behind the dead relay's (relay/relay-health.ts).
// What was wrong before: every send to the dead relay held an attempt worker for MAIL_SMTP_TIMEOUT
// before failing, so 40 messages queued first held all 4 workers for 40 × 2 s / 4 = 20 s before the
// first routed message went out; with the defaults (8 workers, 30 s), a thousand held the engine
// for about an hour. Now the wave of sends under way when the relay went quiet fails once, one probe
// at a time goes to it, and every other send to it is deferred at once (no attempt, no worker held,
// no step of the retry ladder) while the routed relay takes its mail.
import { setRoute } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, metricsText, metricValue, startTestEngine } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp, startSilentRelay } from './helpers/smtp-servers.ts';

const WORKERS = 4;
const DEAD = 40;
const HEALTHY = 5;

let db: TestDatabase;
let dead: Awaited<ReturnType<typeof startSilentRelay>>;
let healthy: ScriptedSmtp;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-dead-relay');
  dead = await startSilentRelay();
  healthy = await startScriptedSmtp();
  await setRoute(db.pool, { domain: 'healthy.test', relay: `127.0.0.1:${healthy.port}`, tls: 'opportunistic' });
});

afterAll(async () => {
  await engine?.stop();
  await Promise.all([dead?.close(), healthy?.close()]);
  await db?.drop();
});

async function statuses(domain: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM mail.deliveries WHERE recipient LIKE $1 GROUP BY status ORDER BY status',
    [`%@${domain}`],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

/** Dead-relay deliveries with an attempt row, i.e. that held a worker for a send. */
async function attemptedDead(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    "SELECT count(DISTINCT d.id)::int AS n FROM mail.deliveries d JOIN mail.attempts a ON a.delivery_id = d.id WHERE d.recipient LIKE '%@dead.test'",
  );
  return rows[0]?.n ?? -1;
}

describe('a default relay that accepts TCP and never greets, next to a healthy routed relay', () => {
  it("the routed relay's mail goes out while the dead relay's is deferred; nothing lost, nothing twice", async () => {
    // The dead relay's mail is queued first: oldest first, it is claimed first.
    for (let n = 0; n < DEAD; n++) await insertAcceptedMessage(db.pool, `sender-${n}@outside.test`, `rcpt-${n}@dead.test`);
    for (let n = 0; n < HEALTHY; n++) await insertAcceptedMessage(db.pool, `sender-${n}@outside.test`, `rcpt-${n}@healthy.test`);
    const relayKey = `127.0.0.1:${dead.port}`;
    engine = await startTestEngine(db.dsn, {
      MAIL_SMTP_ADDR: relayKey,
      // The helper's MAIL_SMTP_TIMEOUT of 2 s: each send to the silent relay holds its worker that long.
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(WORKERS),
      // One attempt each: a second one would wait an hour.
      MAIL_RETRY_LADDER: '1h',
    });
    const running = engine;

    await waitFor('every routed message to be sent', () => statuses('healthy.test'), (seen) => seen.sent === HEALTHY, { timeoutMs: 120_000, intervalMs: 100 });
    // By then the dead relay has had the wave of sends under way when it went quiet (at most one
    // per worker) and a probe or two, not a send for each of its deliveries.
    const attempted = await attemptedDead();
    expect(attempted).toBeLessThanOrEqual(WORKERS + 2);
    expect(dead.connections()).toBeLessThanOrEqual(WORKERS + 2);

    // The probe fails too: the relay is backed off, and its deliveries wait without connecting.
    const site = `site="${relayKey}"`;
    await waitFor('the dead relay to be backed off', async () => metricValue(await metricsText(running), `mail_site_backoffs_total{${site}}`), (n) => n >= 1, { timeoutMs: 60_000, intervalMs: 200 });
    const deferrals = metricValue(await metricsText(running), `mail_site_deferrals_total{${site},reason="probe"}`);
    expect(deferrals).toBeGreaterThan(0);
    const { rows: waiting } = await db.pool.query<{ last_error: string }>(
      `SELECT d.last_error FROM mail.deliveries d
        WHERE d.recipient LIKE '%@dead.test' AND d.status = 'retrying'
          AND NOT EXISTS (SELECT 1 FROM mail.attempts a WHERE a.delivery_id = d.id)`,
    );
    expect(waiting.length).toBeGreaterThan(0);
    for (const row of waiting) expect(row.last_error).toMatch(new RegExp(`^deferred: relay ${relayKey.replaceAll('.', '\\.')} is (backed off|being probed by another send)`));

    await running.stop();
    engine = null;
    // The account: every message is sent (the routed ones, each exactly once at its relay) or
    // still waiting for the dead relay; none failed, none dead-lettered, no bounce.
    expect(await statuses('healthy.test')).toEqual({ sent: HEALTHY });
    for (let n = 0; n < HEALTHY; n++) expect(healthy.accepted.get(`rcpt-${n}@healthy.test`)).toBe(1);
    const deadStatuses = await statuses('dead.test');
    expect(Object.keys(deadStatuses).every((status) => status === 'retrying' || status === 'queued')).toBe(true);
    expect(Object.values(deadStatuses).reduce((sum, n) => sum + n, 0)).toBe(DEAD);
    const { rows: bounces } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE source = 'postern-dsn'");
    expect(bounces[0]?.n).toBe(0);
    // Each attempt on the dead relay failed before any data (timed out, or cut by the stop): none
    // sent, none of unknown outcome, so none can arrive twice.
    const { rows: attempts } = await db.pool.query<{ status: string }>(
      "SELECT DISTINCT a.status FROM mail.attempts a JOIN mail.deliveries d ON d.id = a.delivery_id WHERE d.recipient LIKE '%@dead.test'",
    );
    expect(attempts.filter((attempt) => attempt.status !== 'timed_out' && attempt.status !== 'transport_failed')).toEqual([]);
  }, 240_000);
});
