// Fault matrix, processes: an engine SIGKILLed mid-batch (a real child process), the edge SIGKILLed
// with sessions in the middle of DATA (a real child process, restarted on the same port), two
// engines sharing the queue, and statement timeouts while recording outcomes (a short engine
// statement_timeout and another session holding a lock the recording needs). Where every engine
// stayed alive the account allows zero duplicates; where one was killed, at most one per
// outcome_unknown attempt.
import { setTimeout as delay } from 'node:timers/promises';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { type ChildEngine, spawnEngine } from '../core/helpers/child-engine.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, type SinkBehaviour, startFaultSink } from '../harness/fault-sink.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, type FaultCell, openCell, startTraffic, stopCellProcesses, total } from './helpers/cell.ts';
import { type ChildEdge, spawnEdge } from './helpers/child-edge.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { holdMidData } from './helpers/mid-data-hold.ts';

let redis: FaultRedis;
let db: TestDatabase | null = null;
let sink: FaultSink | null = null;
let edge: Edge | null = null;
let engines: Engine[] = [];
let children: Array<ChildEngine | ChildEdge> = [];

beforeAll(async () => {
  redis = await startFaultRedis();
});

afterEach(async () => {
  for (const child of children) if (!child.exited.done) child.process.kill('SIGKILL');
  await stopCellProcesses({ engines, edge, sink });
  await db?.drop();
  children = [];
  engines = [];
  edge = null;
  sink = null;
  db = null;
});

afterAll(async () => {
  await redis?.close();
});

/** A cell on a database of its own, with its fault sink; cleaned up after the test. */
async function openProcessCell(name: string, n: number, behaviour?: SinkBehaviour): Promise<FaultCell> {
  db = await createTestDatabase(`fault-${name}`);
  sink = await startFaultSink(behaviour);
  return openCell({ cell: name, n, dsn: db.dsn, pool: db.pool, redis, sink });
}

/** The in-process edge most cells send through; the sender's `port`. */
async function startCellEdge(cell: FaultCell): Promise<() => number> {
  edge = await startTestEdge(cell.dsn, EDGE_ENV);
  const port = edge.smtp.port;
  return () => port;
}

describe('fault matrix: processes', () => {
  it('engine SIGKILLed mid-batch: a second engine finishes; duplicates only as outcome_unknown attempts', async () => {
    // 100 ms per reply: sends are in flight when the engine dies.
    const cell = await openProcessCell('engine-killed', cellSize(100), { kind: 'delay-every-reply', delayMs: 100 });
    const traffic = startTraffic(cell, { sender: { port: await startCellEdge(cell), concurrency: 4 } });
    const env = cellEngineEnv(cell, {
      MAIL_POSTGRES_PRIMARY_DSN: cell.dsn,
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '4',
      MAIL_SMTP_TIMEOUT: '4s',
      MAIL_LEASE_DURATION: '6s',
      // The lease must outlast the whole-send deadline by a tenth (a startup rule).
      MAIL_SMTP_SEND_DEADLINE: '5s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '60s',
      MAIL_STREAM_RECLAIM_IDLE: '5s',
      MAIL_RETRY_LADDER: '500ms,1s,2s,4s,8s',
    });
    const victim = await spawnEngine(env);
    children.push(victim);
    const inputs = await traffic.done;
    await waitFor('a quarter delivered by the first engine', () => total(cell.sink.accepted), (count) => count >= cell.n / 2, { timeoutMs: 90_000 });
    victim.process.kill('SIGKILL');
    await waitFor('the engine process to die', () => victim.exited.done, Boolean);
    const faultEndedAt = Date.now();
    engines.push(await startTestEngine(cell.dsn, { ...env, MAIL_STREAM_RECLAIM_IDLE: '5s' }));
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'outcome-unknown',
      annotate: engineNote(engines, 'survivor '),
      note: 'child engine SIGKILLed with sends in flight; survivor started at once; lease 6 s',
    });
    expect(victim.exited.signal).toBe('SIGKILL');
  }, 300_000);

  it('edge SIGKILLed with sessions mid-DATA: nothing half-received is stored, nothing accepted is lost', async () => {
    const cell = await openProcessCell('edge-killed', cellSize(100));
    const port = await getPort();
    let current = await spawnEdge(cell.dsn, port, EDGE_ENV);
    children.push(current);
    engines.push(await startTestEngine(cell.dsn, cellEngineEnv(cell)));
    // Once a quarter is in, every session that reaches the middle of its DATA waits there until the
    // edge has been killed: the kill finds all of them mid-message.
    let accepted = 0;
    const hold = holdMidData(() => accepted >= cell.n / 4);
    const concurrency = 4;
    const traffic = startTraffic(cell, {
      sender: {
        port: () => port,
        concurrency,
        onAccepted: () => {
          accepted += 1;
        },
        midData: hold.midData,
      },
    });
    await hold.allHeld(concurrency);
    current.process.kill('SIGKILL');
    await waitFor('the edge process to die', () => current.exited.done, Boolean);
    hold.release();
    current = await spawnEdge(cell.dsn, port, EDGE_ENV);
    children.push(current);
    const faultEndedAt = Date.now();
    const inputs = await traffic.done;
    const account = await expectEverythingDelivered(cell, inputs, {
      faultEndedAt,
      settleMs: 60_000,
      duplicateBound: inputs.sent.reduce((sum, record) => sum + record.unanswered, 0),
      annotate: engineNote(engines),
      note: `edge SIGKILLed with ${concurrency} sessions mid-DATA, restarted on the same port`,
    });
    // Every held session was cut by the kill and had to be sent again.
    expect(inputs.sent.filter((record) => record.tries > 1).length).toBeGreaterThanOrEqual(concurrency);
    // Half-received messages were never stored: no message row without a 250 for it.
    const { rows } = await cell.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.messages');
    expect(rows[0]?.n).toBe(account.smtpIn + account.storedTwice);
  }, 300_000);

  it('two engines sharing the queue: everything delivered exactly once', async () => {
    const cell = await openProcessCell('two-engines', cellSize(150), { kind: 'delay-every-reply', delayMs: 10 });
    const port = await startCellEdge(cell);
    const env = cellEngineEnv(cell, { MAIL_CLAIM_BATCH_SIZE: '8' });
    engines.push(...(await Promise.all([startTestEngine(cell.dsn, env), startTestEngine(cell.dsn, env)])));
    const startedAt = Date.now();
    const inputs = await startTraffic(cell, { sender: { port, concurrency: 4 } }).done;
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt: startedAt,
      settleMs: 90_000,
      duplicateBound: 'zero',
      annotate: engineNote(engines),
      note: 'two in-process engines, one consumer group; time counted from the first input',
    });
    const { rows } = await cell.pool.query<{ worker_id: string }>('SELECT DISTINCT worker_id FROM mail.attempts');
    expect(rows.map((row) => row.worker_id).sort()).toEqual(engines.map((engine) => engine.workerId).sort());
  }, 300_000);

  // A statement or lock timeout while recording an outcome is transient; the known
  // "sent" must be recorded when the lock goes, not thrown away and sent again after the lease.
  it('statement timeouts while recording: every outcome recorded, nothing sent twice', async () => {
    const cell = await openProcessCell('record-timeouts', cellSize(100), { kind: 'delay-every-reply', delayMs: 30 });
    const inputs = await startTraffic(cell, { sender: { port: await startCellEdge(cell), concurrency: 4 } }).done;
    engines.push(
      await startTestEngine(
        cell.dsn,
        cellEngineEnv(cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '1s', MAIL_LEASE_DURATION: '10s', MAIL_SMTP_TIMEOUT: '2s', MAIL_SMTP_SEND_DEADLINE: '8s' }),
      ),
    );
    const accepted = () => total(cell.sink.accepted);
    await waitFor('delivery under way', accepted, (count) => count >= 10, { timeoutMs: 60_000 });
    // Another session takes a lock every attempt insert waits for, holding it three times longer
    // than the engine's statement timeout, four times over while sends keep finishing.
    const locker = await cell.pool.connect();
    let locks = 0;
    try {
      for (; locks < 4 && accepted() < 2 * cell.n - 10; locks++) {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE mail.attempts IN SHARE MODE');
        await delay(3_000);
        await locker.query('COMMIT');
        await delay(500);
      }
    } finally {
      locker.release();
    }
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt: Date.now(),
      settleMs: 90_000,
      duplicateBound: 'zero',
      annotate: engineNote(engines),
      note: `engine statement_timeout 1 s; ${locks} x 3 s SHARE lock on mail.attempts; lease 10 s`,
    });
    expect(locks).toBeGreaterThan(0);
  }, 300_000);
});
