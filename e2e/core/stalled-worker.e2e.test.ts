// stalled-worker, in one process: an attempt worker alive but stuck (a send that never returns, past
// every timeout) stops heartbeating; the watchdog restarts that loop, counts it, and the stuck
// delivery is taken back when its lease expires and sent by a healthy worker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { OutboundMessage, Relay, SendResult } from '../../apps/core/src/relay/relay.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, metricsText, queueDelivery, startTestEngine, unique, waitForStatus } from './helpers/engine.ts';

let db: TestDatabase;
let engine: Engine;
const stuckRecipient = unique('stuck');
const sent: string[] = [];

// A relay with a bug: the first send to one recipient never settles.
const relay: Relay = {
  name: 'hanging-once',
  async send(message: OutboundMessage): Promise<SendResult> {
    if (message.recipient === stuckRecipient && !sent.includes('hung')) {
      sent.push('hung');
      return new Promise(() => {});
    }
    sent.push(message.recipient);
    return { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'ok' } };
  },
  interrupt() {},
  async close() {},
};

beforeAll(async () => {
  db = await createTestDatabase('core-stalled');
  engine = await startTestEngine(
    db.dsn,
    {
      MAIL_SMTP_MODE: 'stub',
      MAIL_SMTP_TIMEOUT: '500ms',
      MAIL_WATCHDOG_STALL_THRESHOLD: '1500ms',
      MAIL_LEASE_DURATION: '3s',
      MAIL_HEARTBEAT_INTERVAL: '200ms',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '2',
    },
    { relay },
  );
});

afterAll(async () => {
  await engine?.stop();
  await db?.drop();
});

describe('stalled-worker: a worker that stalls while holding work', () => {
  it('is restarted by the watchdog, and its delivery is sent after the lease expires', async () => {
    const id = await queueDelivery(db.pool, { recipient: stuckRecipient });
    const other = await queueDelivery(db.pool, { recipient: unique('healthy') });
    await waitForStatus(db.pool, other, 'sent');
    await waitForStatus(db.pool, id, 'sent', 30_000);
    expect(await attemptsOf(db.pool, id)).toMatchObject([
      { attempt_number: 1, status: 'outcome_unknown' },
      { attempt_number: 2, status: 'sent' },
    ]);
    const text = await metricsText(engine);
    const stalls = [...text.matchAll(/^mail_loop_stalls_total\{[^}]*loop="(attempt-worker-\d)"[^}]*\} (\d+)/gm)];
    expect(stalls.map((match) => Number(match[2])).reduce((a, b) => a + b, 0)).toBe(1);
    // Every loop's series is exported from the start at 0: the stalled one is the one counted.
    const stalled = stalls.find((match) => Number(match[2]) > 0)?.[1];
    const row = await waitFor(
      'the restart to show in mail.workers',
      () => db.pool.query('SELECT restarts, state, last_error FROM mail.workers WHERE worker_id = $1 AND loop = $2', [engine.workerId, stalled]),
      (result) => (result.rows[0]?.restarts ?? 0) >= 1 && result.rows[0]?.state === 'running',
    );
    expect(row.rows[0].last_error).toContain('stalled');
  });
});
