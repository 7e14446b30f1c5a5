// Fault matrix, PostgreSQL paused (docker pause) for 20 s while mail and commands come in and are
// delivered: a hang, not a refusal — connections stay open and no statement answers.
// The edge must never answer 451 while the accept may still commit (the sender would retry and the
// message be stored and delivered twice). Every engine and edge stays alive: zero duplicates.
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, openCell, startTraffic, stopCellProcesses } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { holdMidData } from './helpers/mid-data-hold.ts';
import { type PostgresFaultBench, pausePostgres, startPostgresFaultBench } from './helpers/postgres-faults.ts';

let bench: PostgresFaultBench;
let sink: FaultSink;
let edge: Edge;
let engine: Engine;

beforeAll(async () => {
  [bench, sink] = await Promise.all([startPostgresFaultBench(), startFaultSink({ kind: 'delay-every-reply', delayMs: 20 })]);
}, 180_000);

afterAll(async () => {
  await stopCellProcesses({ engines: [engine], edge, sink });
  await bench?.close();
});

describe('fault matrix: PostgreSQL paused for 20 s', () => {
  it('during intake and delivery: nothing stored or delivered twice, nothing lost', async () => {
    const cell = await openCell({ cell: 'pg-paused', n: cellSize(100), dsn: bench.postgres.dsn, pool: bench.pool, redis: bench.redis, sink });
    // The edge and engine keep their default statement timeout (15 s): shorter than the hang.
    edge = await startTestEdge(cell.dsn, EDGE_ENV);
    engine = await startTestEngine(cell.dsn, cellEngineEnv(cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '15s' }));
    const edgePort = edge.smtp.port;
    // Once a fifth is in, the sessions that reach the middle of their DATA wait there; when all of
    // them do, PostgreSQL is frozen and they are let go, so their accept statements meet the hang
    // (RCPT lookups alone would only meet it with a 451 before DATA, which stores nothing).
    const concurrency = 8;
    const hold = holdMidData(() => traffic.progress() >= (2 * cell.n) / 5);
    const traffic = startTraffic(cell, { sender: { port: () => edgePort, concurrency, paceMs: 400, midData: hold.midData }, paceMs: 150 });
    await hold.allHeld(concurrency);
    const unpause = await pausePostgres(bench.postgres);
    let faultEndedAt: number;
    try {
      hold.release();
      await delay(20_000); // the hang itself, not a wait for a state
    } finally {
      faultEndedAt = await unpause();
    }
    const inputs = await traffic.done;
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'zero',
      annotate: engineNote([engine]),
      note: `docker pause 20 s with ${concurrency} sessions finishing DATA; ${inputs.sent.reduce((sum, r) => sum + r.deferredAfterData, 0)} edge 4xx after the final dot`,
    });
  }, 300_000);
});
