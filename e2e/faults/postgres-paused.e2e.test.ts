// Fault matrix, PostgreSQL paused (docker pause) for 20 s while mail and commands come in and are
// delivered: a hang, not a refusal — connections stay open and no statement answers.
// the edge must never answer 451 while the accept may still commit (the sender would retry and the
// message be stored and delivered twice). Every engine and edge stays alive: zero duplicates.
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { type DedicatedPostgres, startDedicatedPostgres, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { takeAccount, violations } from './helpers/account.ts';
import { engineFacts } from './helpers/engine-facts.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, freshStream, prepareCell, startTraffic } from './helpers/cell.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { pausePostgres } from './helpers/postgres-faults.ts';

let postgres: DedicatedPostgres;
let pool: pg.Pool;
let redis: FaultRedis;
let sink: FaultSink;
let edge: Edge;
let engine: Engine;

beforeAll(async () => {
  [postgres, redis, sink] = await Promise.all([startDedicatedPostgres(), startFaultRedis(), startFaultSink({ kind: 'delay-every-reply', delayMs: 20 })]);
  pool = new pg.Pool({ connectionString: postgres.dsn, max: 3 });
  pool.on('error', () => {});
}, 180_000);

afterAll(async () => {
  await engine?.stop();
  await edge?.stop();
  await sink?.close();
  await pool?.end();
  await redis?.close();
  await postgres?.close();
});

describe('fault matrix: PostgreSQL paused for 20 s', () => {
  it('during intake and delivery: nothing stored or delivered twice, nothing lost', async () => {
    const cell = 'pg-paused';
    const n = cellSize(100);
    const rcpt = await prepareCell(pool, cell);
    await freshStream(redis.client);
    // The edge and engine keep their default statement timeout (15 s): shorter than the hang.
    edge = await startTestEdge(postgres.dsn, EDGE_ENV);
    engine = await startTestEngine(postgres.dsn, cellEngineEnv(sink, redis.addr, cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '15s' }));
    const edgePort = edge.smtp.port;
    // Once a fifth is in, the sessions that reach the middle of their DATA wait there; when all of
    // them do, PostgreSQL is frozen and they are let go, so their accept statements meet the hang
    // (RCPT lookups alone would only meet it with a 451 before DATA, which stores nothing).
    const concurrency = 8;
    let paused = false;
    let holding = 0;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const traffic = startTraffic({
      cell,
      n,
      rcpt,
      redis: redis.client,
      sender: {
        port: () => edgePort,
        concurrency,
        paceMs: 400,
        midData: async () => {
          if (paused || traffic.progress() < (2 * n) / 5) return;
          holding += 1;
          await released;
        },
      },
      paceMs: 150,
    });
    await waitFor('every session held mid-DATA', () => holding, (count) => count === concurrency, { timeoutMs: 60_000 });
    paused = true;
    const unpause = await pausePostgres(postgres);
    let faultEndedAt: number;
    try {
      release();
      await delay(20_000); // the hang itself, not a wait for a state
    } finally {
      faultEndedAt = await unpause();
    }
    const { sent, produced } = await traffic.done;
    const running = [engine];
    const request = {
      cell,
      pool,
      sink,
      sent,
      produced,
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'zero' as const,
      annotate: async () => (await engineFacts(running)).text,
      note: `docker pause 20 s with ${concurrency} sessions finishing DATA; ${sent.reduce((sum, r) => sum + r.deferredAfterData, 0)} edge 4xx after the final dot`,
    };
    const account = await takeAccount(request);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
  }, 300_000);
});
