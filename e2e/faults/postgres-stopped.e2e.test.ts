// Fault matrix, PostgreSQL stopped (docker stop) for 30 s: once while mail and commands come in, once
// while the engine is delivering. The edge answers 4xx while it cannot store, the sender retries, the
// engine waits and resumes; every engine stays alive, so the account must show zero duplicates at
// the relay and nothing lost: the engine must not re-send the sends it could not record.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, type SinkBehaviour, startFaultSink } from '../harness/fault-sink.ts';
import { waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, type FaultCell, openCell, startTraffic, stopCellProcesses, type Traffic, total } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type PostgresFaultBench, startPostgresFaultBench, stopPostgresFor } from './helpers/postgres-faults.ts';

const OUTAGE_MS = 30_000;
let bench: PostgresFaultBench;
let sink: FaultSink | null = null;
let edge: Edge | null = null;
let engine: Engine | null = null;

beforeAll(async () => {
  bench = await startPostgresFaultBench();
}, 180_000);

afterEach(async () => {
  await stopCellProcesses({ engines: [engine], edge, sink });
  engine = null;
  edge = null;
  sink = null;
});

afterAll(async () => {
  await bench?.close();
});

/** A cell on the dedicated PostgreSQL with its own fault sink, and the edge it sends through; the sender's `port`. */
async function openStoppedCell(name: string, behaviour?: SinkBehaviour): Promise<{ cell: FaultCell; port: () => number }> {
  sink = await startFaultSink(behaviour);
  const cell = await openCell({ cell: name, n: cellSize(100), dsn: bench.postgres.dsn, pool: bench.pool, redis: bench.redis, sink });
  edge = await startTestEdge(cell.dsn, EDGE_ENV);
  const port = edge.smtp.port;
  return { cell, port: () => port };
}

/** Every engine stays alive through the outage: zero duplicates, everything delivered within 90 s. */
function expectRecovered(cell: FaultCell, inputs: Traffic, faultEndedAt: number, note: string) {
  return expectEverythingDelivered(cell, inputs, { faultEndedAt, settleMs: 90_000, duplicateBound: 'zero', annotate: engineNote(engine ? [engine] : []), note });
}

describe('fault matrix: PostgreSQL stopped for 30 s', () => {
  it('during intake: everything that was accepted is delivered once', async () => {
    const { cell, port } = await openStoppedCell('pg-stopped-intake');
    engine = await startTestEngine(cell.dsn, cellEngineEnv(cell));
    const traffic = startTraffic(cell, { sender: { port, concurrency: 2, paceMs: 250 }, paceMs: 150 });
    await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 5, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(bench.postgres, OUTAGE_MS);
    const inputs = await traffic.done;
    await expectRecovered(cell, inputs, faultEndedAt, 'docker stop 30 s after a fifth was in; the sender retries every 4xx');
    // The outage really met the intake: some sender had to try again.
    expect(inputs.sent.some((record) => record.tries > 1)).toBe(true);
  }, 300_000);

  it('during delivery: everything is delivered once, nothing re-sent after the database returns', async () => {
    // 50 ms per reply: a send takes a few hundred ms, so delivery is under way when PostgreSQL stops.
    const { cell, port } = await openStoppedCell('pg-stopped-delivery', { kind: 'delay-every-reply', delayMs: 50 });
    const traffic = startTraffic(cell, { sender: { port, concurrency: 4 } });
    // The engine starts once the stream holds the commands, so the fault falls into delivery.
    engine = await startTestEngine(
      cell.dsn,
      cellEngineEnv(cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s', MAIL_LEASE_DURATION: '20s', MAIL_SMTP_SEND_DEADLINE: '15s' }),
    );
    const inputs = await traffic.done;
    await waitFor('a quarter delivered', () => total(cell.sink.accepted), (count) => count >= cell.n / 2, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(bench.postgres, OUTAGE_MS);
    await expectRecovered(cell, inputs, faultEndedAt, 'docker stop 30 s with a quarter delivered; lease 20 s');
  }, 300_000);
});
