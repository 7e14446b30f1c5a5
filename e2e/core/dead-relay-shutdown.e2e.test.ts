// The engine stops while a send waits for the greeting of a relay that accepts TCP and never greets
// (the probe relay/relay-health.ts sends to a dead relay is such a send): the shutdown's interrupt
// must reach it, so the delivery is recorded as interrupted and due again at once.
// What was wrong before: smtp-relay.ts's interrupt closed only sessions already set up; a connection
// still waiting for its greeting outlived the shutdown budget (MAIL_SMTP_TIMEOUT, 30 s by default,
// against MAIL_SHUTDOWN_TIMEOUT's 30 s of which the interrupt comes at 60 %), the engine stopped
// with the send unrecorded, and the delivery stayed 'sending' until its lease ran out — then the
// lease reclaim wrote an outcome_unknown attempt for it, a step of the retry ladder spent on nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, startTestEngine } from './helpers/engine.ts';
import { startSilentRelay } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let dead: Awaited<ReturnType<typeof startSilentRelay>>;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-dead-relay-shutdown');
  dead = await startSilentRelay();
});

afterAll(async () => {
  await engine?.stop();
  await dead?.close();
  await db?.drop();
});

describe('an engine stopping while a send waits for a greeting that never comes', () => {
  it('interrupts that send: the delivery is recorded as interrupted and unlocked, not left to its lease', async () => {
    const { deliveryId } = await insertAcceptedMessage(db.pool, 'sender@outside.test', 'rcpt@dead.test');
    engine = await startTestEngine(db.dsn, {
      MAIL_SMTP_ADDR: `127.0.0.1:${dead.port}`,
      // The greeting wait far outlasts the shutdown budget (the helper's 5 s): only the interrupt
      // can end the send before the engine is gone.
      MAIL_SMTP_TIMEOUT: '2m',
      MAIL_SMTP_SEND_DEADLINE: '4m',
      MAIL_LEASE_DURATION: '10m',
      MAIL_WATCHDOG_STALL_THRESHOLD: '3m',
    });
    await waitFor('the send to connect to the silent relay', async () => dead.connections(), (n) => n === 1, { timeoutMs: 60_000, intervalMs: 50 });
    const running = engine;
    engine = null;
    await running.stop();

    const { rows } = await db.pool.query<{ status: string; locked_by: string | null; last_error: string | null; attempts: number }>(
      `SELECT d.status, d.locked_by, d.last_error, (SELECT count(*)::int FROM mail.attempts a WHERE a.delivery_id = d.id) AS attempts
         FROM mail.deliveries d WHERE d.id = $1`,
      [deliveryId],
    );
    expect(rows[0]).toMatchObject({ status: 'retrying', locked_by: null, attempts: 1 });
    expect(rows[0]?.last_error).toMatch(/^interrupted by engine shutdown/);
  });
});
