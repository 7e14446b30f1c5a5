// MAIL_SMTP_ADDR's relay refusing the engine rather than the recipient, with the replies a real
// Postfix gives (captured from Postfix 3.7; docs/core.md, "Against a real Postfix"), replayed by
// servers in the test process (relay/relay-health.ts, delivery/reply-patterns.txt):
//   smtpd_client_connection_count_limit below the engine's workers: the extra connections are
//     greeted "421 4.7.0 ... Error: too many connections from ...". Each was a failed attempt on the
//     delivery's ladder, so with a short ladder accepted mail was dead-lettered and bounced while
//     the relay took mail on its other connections. Now such a send is deferred (no attempt) and
//     the engine holds itself to the connections the relay took.
//   reject_unauth_destination without the engine's address in mynetworks: "554 5.7.1 <...>: Relay
//     access denied" at every RCPT TO. Each delivery failed for good at once, a bounce for each.
//     Now the relay is probed and backed off (mail_relay_backed_off, the alert's input) and the mail
//     waits until the relay is fixed, then goes out once each.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { captureLogs, createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, metricsText, metricValue, startTestEngine, statusesOfDomain } from './helpers/engine.ts';
import { type ScriptedSmtp, startConnectionLimiter, startScriptedSmtp } from './helpers/smtp-servers.ts';

const POSTFIX_TOO_MANY_CONNECTIONS = '421 4.7.0 relay.relaypeers.test Error: too many connections from 127.0.0.1';

let db: TestDatabase;
const closers: Array<() => Promise<void>> = [];
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-relay-limits');
});

afterAll(async () => {
  await engine?.stop();
  for (const close of closers.splice(0)) await close();
  await db?.drop();
});

const statuses = (domain: string) => statusesOfDomain(db.pool, domain);

async function attemptStatuses(domain: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ status: string; n: number }>(
    'SELECT a.status, count(*)::int AS n FROM mail.attempts a JOIN mail.deliveries d ON d.id = a.delivery_id WHERE d.recipient LIKE $1 GROUP BY a.status ORDER BY a.status',
    [`%@${domain}`],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

async function bounces(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE source = 'postern-dsn'");
  return rows[0]?.n ?? -1;
}

describe('a relay that takes two connections from the engine at once (smtpd_client_connection_count_limit = 2)', () => {
  it('gets every message once over the connections it takes: no attempt spent on the refused ones, nothing dead-lettered or bounced', async () => {
    const MESSAGES = 30;
    const sink = await startScriptedSmtp();
    closers.push(() => sink.close());
    const limiter = await startConnectionLimiter({ host: '127.0.0.1', port: sink.port }, 2, POSTFIX_TOO_MANY_CONNECTIONS);
    closers.push(() => limiter.close());
    for (let n = 0; n < MESSAGES; n++) await insertAcceptedMessage(db.pool, `sender-${n}@outside.test`, `rcpt-${n}@limited.test`);
    const relay = `127.0.0.1:${limiter.port}`;
    const logs = captureLogs('relay-limits');
    engine = await startTestEngine(
      db.dsn,
      {
        MAIL_SMTP_ADDR: relay,
        MAIL_ATTEMPT_WORKER_CONCURRENCY: '4',
        // One retry: a refused connection counted as an attempt twice dead-letters the delivery.
        MAIL_RETRY_LADDER: '300ms',
        MAIL_SHAPING_BACKOFF: '2s',
        MAIL_SHAPING_DEFER: '300ms',
      },
      { logger: logs.logger },
    );
    const running = engine;
    await waitFor('every message to be sent or to have ended', () => statuses('limited.test'), (seen) => (seen.sent ?? 0) + (seen.failed ?? 0) + (seen.dead_letter ?? 0) === MESSAGES, {
      timeoutMs: 120_000,
      intervalMs: 200,
    });
    const deferrals = metricValue(await metricsText(running), `mail_site_deferrals_total{site="${relay}",reason="connections"}`);
    await running.stop();
    engine = null;

    expect(await statuses('limited.test')).toEqual({ sent: MESSAGES });
    // The engine did open more than two at first: the relay refused those, and they cost nothing.
    expect(limiter.refused()).toBeGreaterThan(0);
    expect(limiter.mostAtOnce()).toBe(2);
    // It took the refusals for the relay's limit: capped to the connections the relay held, or (a
    // refusal with none of its own under way, which a loaded machine makes likely: the relay still
    // counted a session just closed) waiting as throttled. Which of the two, and so whether a later
    // send was deferred as over the cap (the metric), depends on timing; that it did one is not.
    const said = logs.lines.map((line) => String(line.msg)).join('\n');
    expect(said).toMatch(/relay refused another connection from this engine|relay throttles this engine/);
    console.log(`[relay-limits] deferrals as over the relay's cap: ${Number.isNaN(deferrals) ? 0 : deferrals}`);
    expect(await attemptStatuses('limited.test')).toEqual({ sent: MESSAGES });
    expect(sink.accepted.size).toBe(MESSAGES);
    expect([...sink.accepted.values()].every((count) => count === 1)).toBe(true);
    expect(await bounces()).toBe(0);
  }, 180_000);
});

describe('a relay that does not relay for the engine (reject_unauth_destination: 554 5.7.1 Relay access denied)', () => {
  it('is backed off and reported, the mail waits; fixed, every message goes once; nothing failed or bounced', async () => {
    const MESSAGES = 20;
    const relaySink: ScriptedSmtp = await startScriptedSmtp();
    closers.push(() => relaySink.close());
    const recipients = Array.from({ length: MESSAGES }, (_, n) => `rcpt-${n}@denied.test`);
    // Postfix's reply at each RCPT TO, as long as the operator has not fixed mynetworks.
    for (const recipient of recipients) relaySink.script(recipient, Array.from({ length: 100 }, () => ({ code: 554, message: `5.7.1 <${recipient}>: Relay access denied` })));
    for (const [n, recipient] of recipients.entries()) await insertAcceptedMessage(db.pool, `sender-${n}@outside.test`, recipient);
    const relay = `127.0.0.1:${relaySink.port}`;
    engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: relay, MAIL_SHAPING_BACKOFF: '2s', MAIL_SHAPING_DEFER: '300ms' });
    const running = engine;
    const gauge = async () => metricValue(await metricsText(running), `mail_relay_backed_off{relay="${relay}",use="default"}`);
    await waitFor('the relay to be reported backed off', gauge, (value) => value === 1, { timeoutMs: 60_000, intervalMs: 200 });
    const meanwhile = await statuses('denied.test');
    expect(meanwhile.failed ?? 0).toBe(0);
    expect(meanwhile.dead_letter ?? 0).toBe(0);
    expect(await bounces()).toBe(0);
    const { rows: denied } = await db.pool.query<{ smtp_text: string }>(
      "SELECT a.smtp_text FROM mail.attempts a JOIN mail.deliveries d ON d.id = a.delivery_id WHERE d.recipient LIKE '%@denied.test'",
    );
    // The wave under way (at most a worker each) and a probe, not an attempt for every message.
    expect(denied.length).toBeGreaterThan(0);
    expect(denied.length).toBeLessThanOrEqual(4 + 2);
    for (const row of denied) expect(row.smtp_text).toMatch(/^554 5\.7\.1 <rcpt-\d+@denied\.test>: Relay access denied$/);

    // The operator fixes the relay: the next probe's message is accepted, then all the rest.
    for (const recipient of recipients) relaySink.script(recipient, []);
    await waitFor('every message to be sent', () => statuses('denied.test'), (seen) => seen.sent === MESSAGES, { timeoutMs: 120_000, intervalMs: 200 });
    expect(await gauge()).toBe(0);
    await running.stop();
    engine = null;
    expect(relaySink.accepted.size).toBe(MESSAGES);
    expect([...relaySink.accepted.values()].every((count) => count === 1)).toBe(true);
    expect(await bounces()).toBe(0);
  }, 180_000);
});
