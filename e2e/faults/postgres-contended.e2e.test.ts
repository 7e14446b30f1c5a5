// Fault matrix, PostgreSQL up but contended: an operator's transaction holds the lock VACUUM FULL,
// ALTER TABLE or LOCK TABLE take (ACCESS EXCLUSIVE on mail.deliveries) for longer than several
// statement timeouts while mail and commands come in. Every statement that touches the table waits
// and is cancelled by statement_timeout (57014) again and again; nothing is wrong with any command.
// Once the lock is gone everything must be delivered once: a command whose acceptance only timed
// out is not poison, and quarantining it would throw away what the producer was told is accepted.
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, openCell, startTraffic, stopCellProcesses } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type PostgresFaultBench, startPostgresFaultBench } from './helpers/postgres-faults.ts';

let bench: PostgresFaultBench;
let sink: FaultSink;
let edge: Edge;
let engine: Engine;

beforeAll(async () => {
  [bench, sink] = await Promise.all([startPostgresFaultBench(), startFaultSink()]);
}, 180_000);

afterAll(async () => {
  await stopCellProcesses({ engines: [engine], edge, sink });
  await bench?.close();
});

describe('fault matrix: mail.deliveries locked by an operator', () => {
  it('ACCESS EXCLUSIVE held through many statement timeouts: every command and message delivered once, none quarantined', async () => {
    const cell = await openCell({ cell: 'pg-locked', n: cellSize(40), dsn: bench.postgres.dsn, pool: bench.pool, redis: bench.redis, sink });
    // 1 s statement timeout: the lock outlasts it (and the stream entry's five deliveries) many times over.
    const env = { MAIL_POSTGRES_STATEMENT_TIMEOUT: '1s' };
    edge = await startTestEdge(cell.dsn, { ...EDGE_ENV, ...env });
    engine = await startTestEngine(cell.dsn, cellEngineEnv(cell, env));
    const edgePort = edge.smtp.port;
    const traffic = startTraffic(cell, { sender: { port: () => edgePort, concurrency: 2, paceMs: 300 }, paceMs: 250 });
    await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 5, { timeoutMs: 60_000 });
    const operator = await bench.pool.connect();
    let faultEndedAt: number;
    try {
      await operator.query('BEGIN');
      await operator.query('LOCK TABLE mail.deliveries IN ACCESS EXCLUSIVE MODE');
      await delay(20_000); // the operator's lock itself, not a wait for a state
    } finally {
      await operator.query('COMMIT');
      operator.release();
      faultEndedAt = Date.now();
    }
    const inputs = await traffic.done;
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt,
      settleMs: 90_000,
      duplicateBound: 'zero',
      annotate: engineNote([engine]),
      note: 'LOCK TABLE mail.deliveries IN ACCESS EXCLUSIVE MODE for 20 s, statement timeout 1 s',
    });
    const quarantined = await bench.pool.query(`SELECT failure_code, failure_detail FROM mail.malformed_commands`);
    expect(quarantined.rows).toEqual([]);
  }, 300_000);
});
