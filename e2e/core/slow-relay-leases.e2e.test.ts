// With ONE engine that stays alive: a slow relay is not a stalled one, a send longer than
// the lease is not re-sent by the engine's own reclaim, a statement timeout while recording does
// not throw a known "sent" away, a reply trickled for ever is cut by the whole-send deadline
// without a false stall, and a send hung in our own code does not keep its worker's slot.
import { createLogger, reclaimExpiredLeases } from '@postern/shared';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, startEngine } from '../../apps/core/src/engine.ts';
import type { Relay } from '../../apps/core/src/relay/relay.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, engineConfig, metricsText, queueDelivery, testCatalog, unique, waitForStatus } from './helpers/engine.ts';
import { type SlowSink, startSlowSink } from './helpers/slow-sink.ts';

let db: TestDatabase;
let sink: SlowSink;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-slow-relay');
  sink = await startSlowSink();
});

afterEach(async () => {
  await engine?.stop();
  engine = null;
  sink.setReplyDelay(0);
});

afterAll(async () => {
  await sink?.close();
  await db?.drop();
});

async function start(env: Record<string, string>, override: (config: ReturnType<typeof engineConfig>) => void = () => {}): Promise<Engine> {
  const config = engineConfig(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`, MAIL_HEARTBEAT_INTERVAL: '200ms', ...env });
  override(config);
  engine = await startEngine(config, { logger: createLogger('core-e2e', config.logLevel), catalog: testCatalog() });
  return engine;
}

function base(running: Engine): string {
  return `http://${running.http?.host}:${running.http?.port}`;
}

/** Polls /readyz until stopped; returns every status seen, with the time it was seen and why. */
function watchReadiness(running: Engine): { seen: Array<{ at: number; status: number; why: string }>; stop: () => Promise<void> } {
  const seen: Array<{ at: number; status: number; why: string }> = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { status, why } = await fetch(`${base(running)}/readyz`)
        .then(async (response) => ({ status: response.status, why: await response.text() }))
        .catch((error: Error) => ({ status: 0, why: error.message }));
      seen.push({ at: Date.now(), status, why });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    seen,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

// These tests set MAIL_WATCHDOG_STALL_THRESHOLD (3 s) far below what docs/core.md asks of it
// (above MAIL_POSTGRES_CONNECT_TIMEOUT + MAIL_POSTGRES_STATEMENT_TIMEOUT), so that a slow send
// outlasts it. On a loaded machine a loop that only waits on PostgreSQL (lease-reclaim, retention,
// the scheduler's claim) may then wait past it too, and is rightly counted as stalled: at a load
// of 30-48 the engine's own lease-reclaim was, and failed test (b). What the relay does reaches
// the attempt workers only, so the stalls and the not-ready answers checked here are theirs.

/** The stalls the watchdog counted for attempt workers. */
function workerStallsOf(text: string): number {
  return [...text.matchAll(/^mail_loop_stalls_total\{loop="attempt-worker-[^}]*\} (\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

/** /readyz said not ready because of an attempt worker (stale, restarting, or stuck in a send). */
const workerNotReady = (sample: { status: number; why: string }) => sample.status !== 200 && /attempt-worker-/.test(sample.why);

describe('slow is not stalled, and an engine never re-sends its own work', () => {
  it('(b) a relay answering every command slowly, within MAIL_SMTP_TIMEOUT, sends longer than the lease: renewed, no duplicate, no false stall', async () => {
    // 1.2 s per reply: a send on a fresh connection waits for 6 replies (7 s), on a reused one
    // for 4 (5 s). The lease is 3 s — shorter than any send — so only renewal keeps it. The
    // startup rule (lease > whole-send deadline + a tenth) is set aside here on purpose: it is
    // the second line of defence, for when renewal cannot reach PostgreSQL.
    // A worker that has not beaten for MAIL_SMTP_TIMEOUT + MAIL_HEARTBEAT_INTERVAL is "stuck in a
    // send" for /readyz: at a 2 s timeout that left 1 s for this process (the relay and the engine
    // both run in it) to take a reply, and at a load of 40-60 it once took longer. At 2.5 s, 1.5 s.
    sink.setReplyDelay(1_200);
    const running = await start(
      { MAIL_SMTP_TIMEOUT: '2500ms', MAIL_WATCHDOG_STALL_THRESHOLD: '3s', MAIL_ATTEMPT_WORKER_CONCURRENCY: '2' },
      (config) => {
        config.engine.leaseDurationMs = 3_000;
      },
    );
    const readiness = watchReadiness(running);
    await waitFor('ready', () => readiness.seen.at(-1)?.status, (status) => status === 200);
    const readySince = Date.now();
    // Another engine's reclaim, as it would run beside this one: it takes back every expired
    // lease it does not hold itself. Only renewal keeps the slow sends' leases from it.
    const otherEngine = { reclaimed: 0, stopped: false };
    const otherReclaim = (async () => {
      while (!otherEngine.stopped) {
        otherEngine.reclaimed += (await reclaimExpiredLeases(db.pool, 100, 13, 3_000, [])).length;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const recipients = Array.from({ length: 6 }, (_, i) => unique(`slow-${i}`));
    const ids = [];
    for (const recipient of recipients) ids.push(await queueDelivery(db.pool, { recipient }));
    try {
      for (const id of ids) await waitForStatus(db.pool, id, 'sent', 90_000);
    } finally {
      otherEngine.stopped = true;
      await otherReclaim;
      await readiness.stop();
    }

    expect(otherEngine.reclaimed).toBe(0);

    expect(recipients.map((recipient) => sink.accepted.get(recipient) ?? 0)).toEqual(recipients.map(() => 1));
    for (const recipient of recipients) expect(sink.bodies.get(recipient)).toContain(`Subject: to ${recipient}`);
    for (const id of ids) expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'sent' }]);
    const text = await metricsText(running);
    expect(workerStallsOf(text)).toBe(0);
    expect(readiness.seen.filter((sample) => sample.at > readySince && workerNotReady(sample))).toEqual([]);
  }, 150_000);

  it('(d) a statement timeout while recording a "sent": recorded once the row is free, never sent again', async () => {
    // The engine's statements time out after 1 s; another session holds the delivery's row lock
    // for 4 s right while the send finishes, so recording it fails with 57014 more than once.
    // Replies take 300 ms, so the lock is taken while the send is under way. MAIL_SMTP_TIMEOUT is
    // well above that: at 500 ms, a pause of this process (the relay and the engine both run in
    // it) of 200 ms at a load of 30 timed a reply out, and the send never reached the relay.
    sink.setReplyDelay(300);
    await start({
      MAIL_POSTGRES_STATEMENT_TIMEOUT: '1s',
      MAIL_SMTP_TIMEOUT: '2s',
      // Under the 6 s lease less a tenth (by default the deadline is 10 replies' timeouts).
      MAIL_SMTP_SEND_DEADLINE: '5s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '3s',
      MAIL_LEASE_DURATION: '6s',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '1',
    });
    const recipient = unique('locked');
    const id = await queueDelivery(db.pool, { recipient });
    await waitForStatus(db.pool, id, 'sending');
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM mail.deliveries WHERE id = $1 FOR UPDATE', [id]);
      await waitFor('the send to reach the relay', () => sink.accepted.get(recipient) ?? 0, (n) => n === 1, { timeoutMs: 20_000 });
      await new Promise((resolve) => setTimeout(resolve, 4_000)); // the lock held past several statement timeouts
      await locker.query('COMMIT');
    } finally {
      locker.release();
    }
    await waitForStatus(db.pool, id, 'sent', 30_000);
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'sent' }]);
    expect(sink.accepted.get(recipient)).toBe(1);
  }, 90_000);

  it('a reply trickled for ever is progress, not a stall: the whole-send deadline cuts it, no watchdog restart, /readyz stays 200', async () => {
    // A line every 400 ms, a reply timeout of 2 s: a pause of this process (the relay runs in it)
    // does not time a line out before the whole-send deadline cuts the trickle.
    const running = await start({
      MAIL_SMTP_TIMEOUT: '2s',
      MAIL_SMTP_SEND_DEADLINE: '10s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '3s',
      MAIL_LEASE_DURATION: '15s',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '1',
    });
    const readiness = watchReadiness(running);
    await waitFor('ready', () => readiness.seen.at(-1)?.status, (status) => status === 200);
    const stuck = unique('trickled');
    const next = unique('next');
    sink.trickleOnce(stuck, 400);
    const stuckId = await queueDelivery(db.pool, { recipient: stuck });
    await waitFor('the relay to trickle its reply', () => sink.trickling, (n) => n === 1, { timeoutMs: 20_000 });
    const nextId = await queueDelivery(db.pool, { recipient: next });

    // One worker: the next delivery goes out once the whole-send deadline (10 s) cut the
    // trickle; the trickled delivery is retried and sent.
    await waitForStatus(db.pool, nextId, 'sent', 60_000);
    await waitForStatus(db.pool, stuckId, 'sent', 60_000);
    await readiness.stop();

    // Every line of the trickle beat the worker's heartbeat: never taken for a stalled worker.
    expect(workerStallsOf(await metricsText(running))).toBe(0);
    expect(readiness.seen.filter(workerNotReady)).toEqual([]);
    expect(await attemptsOf(db.pool, stuckId)).toMatchObject([
      { attempt_number: 1, status: 'timed_out', smtp_text: expect.stringContaining('whole-send deadline of 10000 ms passed') },
      { attempt_number: 2, status: 'sent' },
    ]);
    expect(sink.accepted.get(stuck)).toBe(1);
    expect(sink.accepted.get(next)).toBe(1);
  }, 150_000);

  it('watchdog: one worker, a send hung without any I/O — the slot is freed, the next delivery sent, /readyz 503 only while stuck', async () => {
    // Nothing the relay does can hang a worker past the stall threshold any more (every reply line
    // beats, a silent socket times out first: a startup rule), so the hang is in our own code: a
    // relay whose send for one recipient never settles. The watchdog must still free the slot.
    const stuck = unique('hung');
    const next = unique('next');
    const sent: string[] = [];
    let hung = 0;
    const relay: Relay = {
      name: 'hanging-relay',
      discardsMessages: true,
      async send(message) {
        if (message.recipient === stuck && hung === 0) {
          hung += 1;
          return new Promise<never>(() => {});
        }
        sent.push(message.recipient);
        return { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'ok' } };
      },
      interrupt() {},
      async close() {},
    };
    const config = engineConfig(db.dsn, {
      MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`,
      MAIL_HEARTBEAT_INTERVAL: '200ms',
      MAIL_SMTP_TIMEOUT: '1s',
      MAIL_SMTP_SEND_DEADLINE: '2s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '3s',
      MAIL_LEASE_DURATION: '5s',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '1',
    });
    engine = await startEngine(config, { logger: createLogger('core-e2e', config.logLevel), catalog: testCatalog(), relay });
    const running = engine;
    const readiness = watchReadiness(running);
    await waitFor('ready', () => readiness.seen.at(-1)?.status, (status) => status === 200);
    const stuckId = await queueDelivery(db.pool, { recipient: stuck });
    await waitFor('the send to hang', () => hung, (n) => n === 1, { timeoutMs: 20_000 });
    const nextId = await queueDelivery(db.pool, { recipient: next });

    await waitForStatus(db.pool, nextId, 'sent', 60_000);
    const sentAt = Date.now();
    await waitFor('ready again', () => readiness.seen.at(-1)?.status, (status) => status === 200, { timeoutMs: 10_000 });
    // The abandoned attempt is no longer live: its lease is not renewed, runs out and is taken
    // back as outcome_unknown; the delivery is tried again and sent.
    await waitForStatus(db.pool, stuckId, 'sent', 60_000);
    await readiness.stop();

    const notReady = readiness.seen.filter(workerNotReady);
    expect(notReady.length).toBeGreaterThan(0);
    expect(notReady.every((sample) => sample.at < sentAt)).toBe(true);
    expect(workerStallsOf(await metricsText(running))).toBe(1);
    expect(await attemptsOf(db.pool, stuckId)).toMatchObject([
      { attempt_number: 1, status: 'outcome_unknown' },
      { attempt_number: 2, status: 'sent' },
    ]);
    expect(sent.filter((recipient) => recipient === next)).toHaveLength(1);
    expect(sent.filter((recipient) => recipient === stuck)).toHaveLength(1);
  }, 150_000);
});
