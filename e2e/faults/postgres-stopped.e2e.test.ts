// Fault matrix, PostgreSQL stopped (docker stop) for 30 s: once while mail and commands come in, once
// while the engine is delivering. The edge answers 4xx while it cannot store, the sender retries, the
// engine waits and resumes; every engine stays alive, so the account must show zero duplicates at
// the relay and nothing lost: the engine must not re-send the sends it could not record.
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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
import { stopPostgresFor } from './helpers/postgres-faults.ts';

const OUTAGE_MS = 30_000;
let postgres: DedicatedPostgres;
let pool: pg.Pool;
let redis: FaultRedis;
let sink: FaultSink | null = null;
let edge: Edge | null = null;
let engine: Engine | null = null;

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startDedicatedPostgres(), startFaultRedis()]);
  pool = new pg.Pool({ connectionString: postgres.dsn, max: 3 });
  pool.on('error', () => {});
}, 180_000);

afterEach(async () => {
  await engine?.stop();
  await edge?.stop();
  await sink?.close();
  engine = null;
  edge = null;
  sink = null;
});

afterAll(async () => {
  await pool?.end();
  await redis?.close();
  await postgres?.close();
});

describe('fault matrix: PostgreSQL stopped for 30 s', () => {
  it('during intake: everything that was accepted is delivered once', async () => {
    const cell = 'pg-stopped-intake';
    const n = cellSize(100);
    const rcpt = await prepareCell(pool, cell);
    sink = await startFaultSink();
    await freshStream(redis.client);
    edge = await startTestEdge(postgres.dsn, EDGE_ENV);
    engine = await startTestEngine(postgres.dsn, cellEngineEnv(sink, redis.addr, cell));
    const edgePort = edge.smtp.port;
    const traffic = startTraffic({ cell, n, rcpt, redis: redis.client, sender: { port: () => edgePort, concurrency: 2, paceMs: 250 }, paceMs: 150 });
    await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (2 * n) / 5, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(postgres, OUTAGE_MS);
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
      note: 'docker stop 30 s after a fifth was in; the sender retries every 4xx',
    };
    const account = await takeAccount(request);
    // The outage really met the intake: some sender had to try again.
    expect(sent.some((record) => record.tries > 1)).toBe(true);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
  }, 300_000);

  it('during delivery: everything is delivered once, nothing re-sent after the database returns', async () => {
    const cell = 'pg-stopped-delivery';
    const n = cellSize(100);
    const rcpt = await prepareCell(pool, cell);
    // 50 ms per reply: a send takes a few hundred ms, so delivery is under way when PostgreSQL stops.
    sink = await startFaultSink({ kind: 'delay-every-reply', delayMs: 50 });
    await freshStream(redis.client);
    edge = await startTestEdge(postgres.dsn, EDGE_ENV);
    const edgePort = edge.smtp.port;
    const traffic = startTraffic({ cell, n, rcpt, redis: redis.client, sender: { port: () => edgePort, concurrency: 4 } });
    // The engine starts once the stream holds the commands, so the fault falls into delivery.
    engine = await startTestEngine(
      postgres.dsn,
      cellEngineEnv(sink, redis.addr, cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s', MAIL_LEASE_DURATION: '20s', MAIL_SMTP_SEND_DEADLINE: '15s' }),
    );
    const { sent, produced } = await traffic.done;
    const relay = sink;
    const acceptedAtSink = () => [...relay.accepted.values()].reduce((sum, count) => sum + count, 0);
    await waitFor('a quarter delivered', acceptedAtSink, (count) => count >= n / 2, { timeoutMs: 60_000 });
    const faultEndedAt = await stopPostgresFor(postgres, OUTAGE_MS);
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
      note: 'docker stop 30 s with a quarter delivered; lease 20 s',
    };
    const account = await takeAccount(request);
    expect(violations(account, request)).toEqual([]);
    expect(account.delivered).toBe(account.nIn);
  }, 300_000);
});
