// Fault matrix, processes: an engine SIGKILLed mid-batch (a real child process), the edge SIGKILLed
// with sessions in the middle of DATA (a real child process, restarted on the same port), two
// engines sharing the queue, and statement timeouts while recording outcomes (a short engine
// statement_timeout and another session holding a lock the recording needs). Where every engine
// stayed alive the account allows zero duplicates; where one was killed, at most one per
// outcome_unknown attempt.
import { setTimeout as delay } from 'node:timers/promises';
import getPort from 'get-port';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { type ChildEngine, spawnEngine } from '../core/helpers/child-engine.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { takeAccount, violations } from './helpers/account.ts';
import { engineFacts } from './helpers/engine-facts.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, freshStream, prepareCell, startTraffic } from './helpers/cell.ts';
import { type ChildEdge, spawnEdge } from './helpers/child-edge.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';

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
  await Promise.all(engines.map((engine) => engine.stop()));
  await edge?.stop();
  await sink?.close();
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

const acceptedAt = (relay: FaultSink) => () => [...relay.accepted.values()].reduce((sum, count) => sum + count, 0);

describe('fault matrix: processes', () => {
  it('engine SIGKILLed mid-batch: a second engine finishes; duplicates only as outcome_unknown attempts', async () => {
    const cell = 'engine-killed';
    const n = cellSize(100);
    db = await createTestDatabase(`fault-${cell}`);
    const rcpt = await prepareCell(db.pool, cell);
    // 100 ms per reply: sends are in flight when the engine dies.
    sink = await startFaultSink({ kind: 'delay-every-reply', delayMs: 100 });
    await freshStream(redis.client);
    edge = await startTestEdge(db.dsn, EDGE_ENV);
    const edgePort = edge.smtp.port;
    const traffic = startTraffic({ cell, n, rcpt, redis: redis.client, sender: { port: () => edgePort, concurrency: 4 } });
    const env = cellEngineEnv(sink, redis.addr, cell, {
      MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
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
    const { sent, produced } = await traffic.done;
    await waitFor('a quarter delivered by the first engine', acceptedAt(sink), (count) => count >= n / 2, { timeoutMs: 90_000 });
    victim.process.kill('SIGKILL');
    await waitFor('the engine process to die', () => victim.exited.done, Boolean);
    const faultEndedAt = Date.now();
    engines.push(await startTestEngine(db.dsn, { ...env, MAIL_STREAM_RECLAIM_IDLE: '5s' }));
    const request = {
      cell,
      pool: db.pool,
      sink,
      sent,
      produced,
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'outcome-unknown' as const,
      annotate: async () => `survivor ${(await engineFacts(engines)).text}`,
      note: 'child engine SIGKILLed with sends in flight; survivor started at once; lease 6 s',
    };
    const account = await takeAccount(request);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
    expect(victim.exited.signal).toBe('SIGKILL');
  }, 300_000);

  it('edge SIGKILLed with sessions mid-DATA: nothing half-received is stored, nothing accepted is lost', async () => {
    const cell = 'edge-killed';
    const n = cellSize(100);
    db = await createTestDatabase(`fault-${cell}`);
    const rcpt = await prepareCell(db.pool, cell);
    sink = await startFaultSink();
    await freshStream(redis.client);
    const port = await getPort();
    const edgeEnv = { ...EDGE_ENV };
    let current = await spawnEdge(db.dsn, port, edgeEnv);
    children.push(current);
    engines.push(await startTestEngine(db.dsn, cellEngineEnv(sink, redis.addr, cell)));
    // Once a quarter is in, every session that reaches the middle of its DATA waits there until the
    // edge has been killed: the kill finds all of them mid-message.
    let killed = false;
    let holding = 0;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let accepted = 0;
    const concurrency = 4;
    const traffic = startTraffic({
      cell,
      n,
      rcpt,
      redis: redis.client,
      sender: {
        port: () => port,
        concurrency,
        onAccepted: () => {
          accepted += 1;
        },
        midData: async () => {
          if (killed || accepted < n / 4) return;
          holding += 1;
          await released;
          holding -= 1;
        },
      },
    });
    await waitFor('every session held mid-DATA', () => holding, (count) => count === concurrency, { timeoutMs: 60_000 });
    current.process.kill('SIGKILL');
    await waitFor('the edge process to die', () => current.exited.done, Boolean);
    killed = true;
    release();
    current = await spawnEdge(db.dsn, port, edgeEnv);
    children.push(current);
    const faultEndedAt = Date.now();
    const { sent, produced } = await traffic.done;
    const unanswered = sent.reduce((sum, record) => sum + record.unanswered, 0);
    const request = {
      cell,
      pool: db.pool,
      sink,
      sent,
      produced,
      faultEndedAt,
      settleMs: 60_000,
      duplicateBound: unanswered,
      annotate: async () => (await engineFacts(engines)).text,
      note: `edge SIGKILLed with ${concurrency} sessions mid-DATA, restarted on the same port`,
    };
    const account = await takeAccount(request);
    // Every held session was cut by the kill and had to be sent again.
    expect(sent.filter((record) => record.tries > 1).length).toBeGreaterThanOrEqual(concurrency);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
    // Half-received messages were never stored: no message row without a 250 for it.
    const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.messages');
    expect(rows[0]?.n).toBe(account.smtpIn + account.storedTwice);
  }, 300_000);

  it('two engines sharing the queue: everything delivered exactly once', async () => {
    const cell = 'two-engines';
    const n = cellSize(150);
    db = await createTestDatabase(`fault-${cell}`);
    const rcpt = await prepareCell(db.pool, cell);
    sink = await startFaultSink({ kind: 'delay-every-reply', delayMs: 10 });
    await freshStream(redis.client);
    edge = await startTestEdge(db.dsn, EDGE_ENV);
    const env = cellEngineEnv(sink, redis.addr, cell, { MAIL_CLAIM_BATCH_SIZE: '8' });
    engines.push(...(await Promise.all([startTestEngine(db.dsn, env), startTestEngine(db.dsn, env)])));
    const edgePort = edge.smtp.port;
    const startedAt = Date.now();
    const { sent, produced } = await startTraffic({ cell, n, rcpt, redis: redis.client, sender: { port: () => edgePort, concurrency: 4 } }).done;
    const request = {
      cell,
      pool: db.pool,
      sink,
      sent,
      produced,
      faultEndedAt: startedAt,
      settleMs: 90_000,
      duplicateBound: 'zero' as const,
      annotate: async () => (await engineFacts(engines)).text,
      note: 'two in-process engines, one consumer group; time counted from the first input',
    };
    const account = await takeAccount(request);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
    const { rows } = await db.pool.query<{ worker_id: string }>('SELECT DISTINCT worker_id FROM mail.attempts');
    expect(rows.map((row) => row.worker_id).sort()).toEqual(engines.map((engine) => engine.workerId).sort());
  }, 300_000);

  // A statement or lock timeout while recording an outcome is transient; the known
  // "sent" must be recorded when the lock goes, not thrown away and sent again after the lease.
  it('statement timeouts while recording: every outcome recorded, nothing sent twice', async () => {
    const cell = 'record-timeouts';
    const n = cellSize(100);
    db = await createTestDatabase(`fault-${cell}`);
    const rcpt = await prepareCell(db.pool, cell);
    sink = await startFaultSink({ kind: 'delay-every-reply', delayMs: 30 });
    await freshStream(redis.client);
    edge = await startTestEdge(db.dsn, EDGE_ENV);
    const edgePort = edge.smtp.port;
    const { sent, produced } = await startTraffic({ cell, n, rcpt, redis: redis.client, sender: { port: () => edgePort, concurrency: 4 } }).done;
    engines.push(
      await startTestEngine(
        db.dsn,
        cellEngineEnv(sink, redis.addr, cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '1s', MAIL_LEASE_DURATION: '10s', MAIL_SMTP_TIMEOUT: '2s', MAIL_SMTP_SEND_DEADLINE: '8s' }),
      ),
    );
    const relay = sink;
    await waitFor('delivery under way', acceptedAt(relay), (count) => count >= 10, { timeoutMs: 60_000 });
    // Another session takes a lock every attempt insert waits for, holding it three times longer
    // than the engine's statement timeout, four times over while sends keep finishing.
    const locker = await db.pool.connect();
    let locks = 0;
    try {
      for (; locks < 4 && acceptedAt(relay)() < 2 * n - 10; locks++) {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE mail.attempts IN SHARE MODE');
        await delay(3_000);
        await locker.query('COMMIT');
        await delay(500);
      }
    } finally {
      locker.release();
    }
    const faultEndedAt = Date.now();
    const request = {
      cell,
      pool: db.pool,
      sink,
      sent,
      produced,
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'zero' as const,
      annotate: async () => (await engineFacts(engines)).text,
      note: `engine statement_timeout 1 s; ${locks} x 3 s SHARE lock on mail.attempts; lease 10 s`,
    };
    const account = await takeAccount(request);
    expect(locks).toBeGreaterThan(0);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
  }, 300_000);
});
