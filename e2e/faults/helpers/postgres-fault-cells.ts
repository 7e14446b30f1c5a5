// The cells of a fault-matrix file whose fault is PostgreSQL itself (stopped, read-only): one
// dedicated server for the file (postgres-faults.ts), and per test a cell on it with a fault sink
// of its own, the edge the sender goes through and the engine, all stopped after the test. Every
// engine stays alive through such a fault, so the account must close with zero duplicates.
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { Engine } from '../../../apps/core/src/engine.ts';
import type { Edge } from '../../../apps/mta/src/edge.ts';
import { startTestEngine } from '../../core/helpers/engine.ts';
import { type FaultSink, type SinkBehaviour, startFaultSink } from '../../harness/fault-sink.ts';
import { startTestEdge } from '../../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, type FaultCell, openCell, stopCellProcesses, type Traffic } from './cell.ts';
import { engineNote } from './engine-facts.ts';
import { type PostgresFaultBench, startPostgresFaultBench } from './postgres-faults.ts';

export interface PostgresFaultCells {
  /** The file's server (set once beforeAll has run). */
  bench(): PostgresFaultBench;
  /** A cell of 100 (scaled) with its sink and edge; `port` is the edge's SMTP port. */
  open(name: string, behaviour?: SinkBehaviour): Promise<{ cell: FaultCell; port: () => number; edge: Edge }>;
  /** The cell's engine, with the cell's settings and `env` over them. */
  startEngine(cell: FaultCell, env?: Record<string, string>): Promise<Engine>;
  /** Everything delivered once within 90 s of `faultEndedAt`, no duplicate. */
  expectRecovered(cell: FaultCell, inputs: Traffic, faultEndedAt: number, note: string): ReturnType<typeof expectEverythingDelivered>;
}

/** Registers the file's hooks; call at the top level of a test file. */
export function postgresFaultCells(): PostgresFaultCells {
  let bench: PostgresFaultBench | undefined;
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

  const theBench = () => {
    if (!bench) throw new Error('the PostgreSQL fault bench is not started');
    return bench;
  };

  return {
    bench: theBench,
    async open(name, behaviour) {
      sink = await startFaultSink(behaviour);
      const server = theBench();
      const cell = await openCell({ cell: name, n: cellSize(100), dsn: server.postgres.dsn, pool: server.pool, redis: server.redis, sink });
      const started = await startTestEdge(cell.dsn, EDGE_ENV);
      edge = started;
      const port = started.smtp.port;
      return { cell, port: () => port, edge: started };
    },
    async startEngine(cell, env = {}) {
      engine = await startTestEngine(cell.dsn, cellEngineEnv(cell, env));
      return engine;
    },
    expectRecovered(cell, inputs, faultEndedAt, note) {
      return expectEverythingDelivered(cell, inputs, {
        faultEndedAt,
        settleMs: 90_000,
        duplicateBound: 'zero',
        annotate: engineNote(engine ? [engine] : []),
        note,
      });
    },
  };
}
