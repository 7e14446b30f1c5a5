// Fault matrix, Redis restarted empty (no RDB, no AOF) in the middle of the intake: the stream and
// the consumer group are gone. Entries Redis acknowledged and then destroyed before any engine read
// them are the restart's loss, not Postern's, and are counted apart; every entry an engine read,
// every entry added after the restart and every SMTP message must be accounted for, once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, openCell, startTraffic, stopCellProcesses } from './helpers/cell.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { FAULT_SOURCE, type XaddRecord } from './helpers/stream-producer.ts';

let redis: FaultRedis;
let db: TestDatabase;
let sink: FaultSink;
let edge: Edge;
let engine: Engine;

beforeAll(async () => {
  [redis, db, sink] = await Promise.all([startFaultRedis(), createTestDatabase('fault-redis-restart'), startFaultSink()]);
});

afterAll(async () => {
  await stopCellProcesses({ engines: [engine], edge, sink });
  await db?.drop();
  await redis?.close();
});

describe('fault matrix: Redis restarted empty during intake', () => {
  it('every command an engine read and every later one is delivered once; the edge is unaffected', async () => {
    const cell = await openCell({ cell: 'redis-restarted-empty', n: cellSize(100), dsn: db.dsn, pool: db.pool, redis, sink });
    edge = await startTestEdge(cell.dsn, EDGE_ENV);
    engine = await startTestEngine(cell.dsn, cellEngineEnv(cell));
    const edgePort = edge.smtp.port;
    const traffic = startTraffic(cell, { sender: { port: () => edgePort, concurrency: 2, paceMs: 100 }, paceMs: 100 });
    await waitFor('a third of the intake handed over', traffic.progress, (count) => count >= (2 * cell.n) / 3, { timeoutMs: 60_000 });
    const { oldServerGoneAt } = await redis.restartEmpty();
    const faultEndedAt = Date.now();
    const inputs = await traffic.done;
    await expectEverythingDelivered(cell, inputs, {
      faultEndedAt,
      settleMs: 60_000,
      duplicateBound: 'zero',
      annotate: engineNote([engine]),
      // Acknowledged by the old server (the producer goes on while `docker stop` takes its time; on a
      // loaded machine that is seconds) and never seen by the engine: gone with Redis's memory.
      destroyedBeforeRead: (record: XaddRecord) => record.at <= oldServerGoneAt,
      note: 'docker stop/start of a Redis without persistence after a third was in',
    });
    // The restart met the stream: commands were added after it and were all accepted.
    const after = inputs.produced.filter((record) => record.entryId !== null && record.at > faultEndedAt);
    expect(after.length).toBeGreaterThan(0);
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM mail.deliveries WHERE source = $1 AND idempotency_key = ANY($2::text[])',
      [FAULT_SOURCE, after.map((record) => record.command.idempotencyKey)],
    );
    expect(rows[0]?.n).toBe(after.length);
  }, 300_000);
});
