// MAIL_SMTP_ADDR's relay accepts TCP and never greets, while a routed relay is healthy: the routed
// domain's mail must not wait behind the dead relay's (relay/relay-health.ts).
// What was wrong before: every send to the dead relay held an attempt worker for MAIL_SMTP_TIMEOUT
// before failing, so 40 messages queued first held all 4 workers for 40 × 2 s / 4 = 20 s before the
// first routed message went out; with the defaults (8 workers, 30 s), a thousand held the engine
// for about an hour. Now the wave of sends under way when the relay went quiet fails once, one probe
// at a time goes to it, and every other send to it is deferred at once (no attempt, no worker held,
// no step of the retry ladder) while the routed relay takes its mail. mail_relay_backed_off says so
// at each scrape (relay/relay-gauges.ts: 1 for the default relay, 0 for the healthy routed one, the
// alert PosternDefaultRelayBackedOff's input) and drops to 0 once the relay greets again and a
// probe gets a session; the mail that waited for it then goes out, each message once.
import { setRoute } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, metricsText, metricValue, startTestEngine, statusesOfDomain } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp, startSilentRelay } from './helpers/smtp-servers.ts';

const WORKERS = 4;
const DEAD = 40;
const HEALTHY = 5;

let db: TestDatabase;
let dead: Awaited<ReturnType<typeof startSilentRelay>>;
let healthy: ScriptedSmtp;
/** The default relay once it answers again, on the dead one's port. */
let healed: ScriptedSmtp | null = null;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-dead-relay');
  dead = await startSilentRelay();
  healthy = await startScriptedSmtp();
  await setRoute(db.pool, { domain: 'healthy.test', relay: `127.0.0.1:${healthy.port}`, tls: 'opportunistic' });
});

afterAll(async () => {
  await engine?.stop();
  await Promise.all([dead?.close(), healthy?.close(), healed?.close()]);
  await db?.drop();
});

const statuses = (domain: string) => statusesOfDomain(db.pool, domain);

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
      // Backoffs of 10, 20, 40 s...: the relay, healed, is probed again within the test.
      MAIL_SHAPING_BACKOFF: '10s',
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

    // What is backed off now, at scrape time: the default relay, not the routed one.
    const gauge = async (use: string, relay: string) => metricValue(await metricsText(running), `mail_relay_backed_off{relay="${relay}",use="${use}"}`);
    await waitFor('the gauge to say the default relay is backed off', () => gauge('default', relayKey), (value) => value === 1, { timeoutMs: 30_000, intervalMs: 200 });
    expect(await gauge('route', `127.0.0.1:${healthy.port}`)).toBe(0);

    // The relay greets again, on its port: the next probe (at the end of a backoff of at most a
    // few tens of seconds) gets a session, and the gauge is 0 again; the deliveries that were only
    // deferred go out, each once. Those the wave or a probe attempted wait an hour (the ladder).
    await dead.close();
    healed = await startScriptedSmtp({ host: '127.0.0.1', port: dead.port });
    await waitFor('the gauge to say the default relay is no longer backed off', () => gauge('default', relayKey), (value) => value === 0, { timeoutMs: 120_000, intervalMs: 200 });
    const deferredOnly = await waitFor(
      'the deliveries that were only deferred to be sent',
      async () =>
        (
          await db.pool.query<{ status: string }>(
            "SELECT d.status FROM mail.deliveries d WHERE d.recipient LIKE '%@dead.test' AND NOT EXISTS (SELECT 1 FROM mail.attempts a WHERE a.delivery_id = d.id AND a.status <> 'sent')",
          )
        ).rows,
      (rows) => rows.every((row) => row.status === 'sent'),
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    expect(deferredOnly.length).toBeGreaterThanOrEqual(DEAD - WORKERS - 2);

    await running.stop();
    engine = null;
    // The account: every message is sent (each exactly once at its relay) or, attempted against
    // the dead relay, still waiting for its next step; none failed, none dead-lettered, no bounce.
    expect(await statuses('healthy.test')).toEqual({ sent: HEALTHY });
    for (let n = 0; n < HEALTHY; n++) expect(healthy.accepted.get(`rcpt-${n}@healthy.test`)).toBe(1);
    const deadStatuses = await statuses('dead.test');
    expect(Object.keys(deadStatuses).every((status) => status === 'retrying' || status === 'sent')).toBe(true);
    expect(Object.values(deadStatuses).reduce((sum, n) => sum + n, 0)).toBe(DEAD);
    expect(deadStatuses.sent).toBe(healed.accepted.size);
    expect([...healed.accepted.values()].every((count) => count === 1)).toBe(true);
    const { rows: bounces } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE source = 'postern-dsn'");
    expect(bounces[0]?.n).toBe(0);
    // Each attempt on the dead relay failed before any data (timed out, or cut by the stop): none
    // of unknown outcome, so none can arrive twice.
    const { rows: attempts } = await db.pool.query<{ status: string }>(
      "SELECT DISTINCT a.status FROM mail.attempts a JOIN mail.deliveries d ON d.id = a.delivery_id WHERE d.recipient LIKE '%@dead.test'",
    );
    expect(attempts.filter((attempt) => !['timed_out', 'transport_failed', 'sent'].includes(attempt.status))).toEqual([]);
  }, 240_000);
});
