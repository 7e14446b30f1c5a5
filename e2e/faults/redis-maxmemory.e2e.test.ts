// Fault matrix, Redis at maxmemory, as docs/deploy.md asks it to be set up: a few MiB of
// `maxmemory`, `maxmemory-policy noeviction`, `appendonly yes`. Two producers XADD commands without
// pause (each retried until acknowledged, as an outbox would, every refusal counted) until Redis
// refuses them (`OOM command not allowed when used memory > 'maxmemory'`). The cells run in order
// on one Redis, each with its own stream contents and consumer group:
//  1. two engines running while the producers fill Redis: Redis refuses XADDs, then the producers
//     write again by themselves, because the engines remove the entries they handled
//     (apps/core/src/intake/stream-trim.ts). Before, nothing removed them: Redis stayed full of
//     handled entries and refused every XADD for good.
//  2. no engine running while the producers fill Redis (the group exists: engines ran before), then
//     one engine started at maxmemory: it comes up ready and drains the stream, and the producers
//     write again. Before, its loop failed on XGROUP CREATE (refused at maxmemory before Redis looks
//     for the group) and restarted forever: nothing was read.
// Each cell ends with the account (every XADD a producer got an id for delivered once, counted at
// the sink), the producers' refusals checked against Redis's own count of refused XADDs (so the
// engines met no OOM error but XGROUP CREATE's, and no refusal went unseen), nothing pending,
// nothing quarantined, and the handled entries gone from the stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { metricsText, startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { createTestDatabase, readyzWhen, type TestDatabase, waitFor } from '../harness/index.ts';
import { type CellRun, cellEngineEnv, expectEverythingDelivered, type FaultCell, openCell, stopCellProcesses } from './helpers/cell.ts';
import { engineFacts, metricSum } from './helpers/engine-facts.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { COMMAND_STREAM, faultCommand, produceAll, type XaddRecord } from './helpers/stream-producer.ts';

const MAXMEMORY = 3 * 1024 * 1024;
/** Characters of padding per command: an entry of about 16 KB, so about a hundred fill Redis. */
const PADDING = 16_000;
const N = 300;
const PRODUCERS = 2;
/** The machine the suites run on is shared: an engine waits longer for PostgreSQL than cells do. */
const SLOW_MACHINE_ENV = { MAIL_POSTGRES_CONNECT_TIMEOUT: '10s' };
let redis: FaultRedis;
let db: TestDatabase;
let sink: FaultSink;
let engines: Engine[] = [];

beforeAll(async () => {
  [redis, db, sink] = await Promise.all([
    startFaultRedis({ serverArgs: ['--maxmemory', String(MAXMEMORY), '--maxmemory-policy', 'noeviction', '--appendonly', 'yes'] }),
    createTestDatabase('fault-redis-maxmemory'),
    startFaultSink(),
  ]);
}, 120_000);

afterAll(async () => {
  await stopCellProcesses({ engines, edge: null, sink });
  await db?.drop();
  await redis?.close();
}, 300_000);

async function stopEngines(): Promise<void> {
  await Promise.all(engines.map((engine) => engine.stop()));
  engines = [];
}

const isOom = (error: Error) => error.message.startsWith('OOM ');

interface Production {
  acknowledged(): number;
  /** When each XADD was acknowledged (epoch ms), in order. */
  acknowledgedAt: number[];
  /** XADDs Redis refused at maxmemory (OOM), over both producers. */
  refused(): number;
  /** Any other error an XADD got. */
  otherErrors(): string[];
  done: Promise<XaddRecord[]>;
}

/** N commands of about 16 KB, split between PRODUCERS producers writing without pause, each
 *  retrying its XADD until acknowledged. */
function produce(cell: FaultCell): Production {
  let acknowledged = 0;
  let refused = 0;
  const acknowledgedAt: number[] = [];
  const otherErrors: string[] = [];
  const commands = Array.from({ length: cell.n }, (_, i) => ({ ...faultCommand(cell.cell, i), padding: PADDING }));
  const shares = Array.from({ length: PRODUCERS }, (_, p) => commands.filter((_, i) => i % PRODUCERS === p));
  const runs = shares.map((share) =>
    produceAll(redis.client, cell.cell, share, {
      deadlineMs: 300_000,
      onAcknowledged: () => {
        acknowledged += 1;
        acknowledgedAt.push(Date.now());
      },
      onRefused: (error) => {
        if (isOom(error)) refused += 1;
        else otherErrors.push(error.message);
      },
    }),
  );
  return {
    acknowledged: () => acknowledged,
    acknowledgedAt,
    refused: () => refused,
    otherErrors: () => otherErrors,
    done: Promise.all(runs).then((records) => records.flat()),
  };
}

/** Redis's own count, since CONFIG RESETSTAT, of the calls it refused by command (every refusal
 *  is counted, whoever made it and whatever it made of the answer), and of the OOM errors it gave. */
async function redisRefusals(): Promise<{ rejected: Record<string, number>; oomErrors: number }> {
  const commands = await redis.client.info('commandstats');
  const errors = await redis.client.info('errorstats');
  const rejected: Record<string, number> = {};
  for (const [, command, count] of commands.matchAll(/^cmdstat_([^:]+):.*rejected_calls=(\d+)/gm)) if (Number(count) > 0) rejected[command as string] = Number(count);
  return { rejected, oomErrors: Number(/^errorstat_OOM:count=(\d+)/m.exec(errors)?.[1] ?? 0) };
}

async function usedMemory(): Promise<number> {
  return Number(/^used_memory:(\d+)/m.exec(await redis.client.info('memory'))?.[1]);
}

/** The producers were refused, then had XADDs acknowledged again without anyone acting. */
async function expectProducersResume(production: Production): Promise<{ backlog: number }> {
  const backlog = await waitFor('Redis to refuse an XADD (maxmemory reached)', production.refused, (count) => count > 0, { timeoutMs: 60_000, intervalMs: 20 })
    .then(() => redis.client.xlen(COMMAND_STREAM));
  const before = production.acknowledged();
  await waitFor('the producers to have XADDs acknowledged again after the refusal', production.acknowledged, (count) => count >= Math.min(N, before + 20), {
    timeoutMs: 90_000,
    intervalMs: 50,
  });
  return { backlog };
}

/** The account, then what Redis says: every refusal seen by a producer, none met by an engine but XGROUP CREATE,
 *  nothing pending, nothing quarantined, the handled entries gone from the stream. */
async function expectSettled(cell: FaultCell, production: Production, produced: XaddRecord[], run: Omit<CellRun, 'settleMs' | 'duplicateBound'>): Promise<void> {
  // No engine is killed, but on a loaded machine a stalled engine's lease can run out and its
  // delivery be sent again (an outcome_unknown attempt: 5 in one run); a command the intake
  // accepted twice would be a duplicate without one.
  await expectEverythingDelivered(cell, { sent: [], produced }, { ...run, settleMs: 120_000, duplicateBound: 'outcome-unknown' });
  expect(production.otherErrors()).toEqual([]);
  const refusals = await redisRefusals();
  console.log(`[redis-maxmemory] ${cell.cell}: Redis refused ${JSON.stringify(refusals)}`);
  // Every XADD Redis refused was seen by a producer. The engines met one refusal only: XGROUP
  // CREATE, once per start of their stream loop (the group there, they read on).
  const { xadd, 'xgroup|create': groupCreate = 0, ...others } = refusals.rejected;
  expect({ xadd, others }).toEqual({ xadd: production.refused(), others: {} });
  expect(refusals.oomErrors).toBe(production.refused() + groupCreate);
  const group = `faults-${cell.cell}`;
  expect(Number(((await redis.client.xpending(COMMAND_STREAM, group)) as [number])[0])).toBe(0);
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.malformed_commands WHERE stream_entry_id IS NOT NULL');
  expect(rows[0]?.n).toBe(0);
  // Each engine keeps the last entry it handled in the stream's order; entries it handled past one
  // that failed (PostgreSQL slow to answer, on this machine) stay until it handles newer ones: one
  // read (50 entries) at most per engine.
  const kept = await waitFor('the handled entries removed from the stream', () => redis.client.xlen(COMMAND_STREAM), (length) => length <= 50 * engines.length, {
    timeoutMs: 30_000,
  });
  console.log(`[redis-maxmemory] ${cell.cell}: ${kept} entries left in the stream`);
  for (const engine of engines) {
    await readyzWhen(engine, 200, 60_000);
    const text = await metricsText(engine);
    expect(metricSum(text, 'mail_redis_maxmemory_bytes')).toBe(MAXMEMORY);
    expect(metricSum(text, 'mail_redis_used_memory_bytes')).toBeGreaterThan(0);
    // The engines' group, sampled from XINFO GROUPS: nothing left unread, its last read entry recent.
    const ofGroup = (body: string, name: string) =>
      body.split('\n').find((line) => line.startsWith(`${name}{`) && line.includes(`group="${group}"`))?.split(' ').at(-1);
    await waitFor('the group exported with nothing unread', async () => ofGroup(await metricsText(engine), 'mail_stream_group_lag'), (lag) => lag === '0', { timeoutMs: 30_000 });
    const lastRead = Number(ofGroup(await metricsText(engine), 'mail_stream_group_last_read_timestamp_seconds'));
    expect(Date.now() / 1000 - lastRead).toBeLessThan(600);
  }
}

/** The longest time (ms) between two acknowledged XADDs after `from`: how long no producer could write. */
function longestPause(production: Production, from = 0): number {
  const times = production.acknowledgedAt.filter((at) => at >= from);
  return times.reduce((longest, at, i) => Math.max(longest, i === 0 ? 0 : at - (times[i - 1] as number)), 0);
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function notes(production: Production, what: string, extra: () => string): () => Promise<string> {
  return async () =>
    `${what}; ${production.refused()} XADDs refused (OOM), each retried; ${extra()}; Redis used_memory ${(await usedMemory()) >> 10} KiB of ${MAXMEMORY >> 10} KiB at the end; ${(await engineFacts(engines)).text}`;
}

describe('fault matrix: Redis at maxmemory with noeviction, producers still writing', () => {
  it('two engines running: producers are refused, then write again by themselves; everything once', async () => {
    const cell = await openCell({ cell: 'redis-maxmemory-running', n: N, dsn: db.dsn, pool: db.pool, redis, sink });
    const env = cellEngineEnv(cell, SLOW_MACHINE_ENV);
    engines = await Promise.all([startTestEngine(cell.dsn, env), startTestEngine(cell.dsn, env)]);
    for (const engine of engines) await readyzWhen(engine, 200, 90_000);
    await redis.client.config('RESETSTAT');
    const production = produce(cell);
    const { backlog } = await expectProducersResume(production);
    const produced = await production.done;
    await expectSettled(cell, production, produced, {
      faultEndedAt: Date.now(),
      annotate: notes(
        production,
        'two engines running while two producers filled Redis (maxmemory 3 MiB)',
        () => `${backlog} entries in the stream at the first refusal; no XADD acknowledged for ${seconds(longestPause(production))} at most`,
      ),
      note: 'maxmemory-policy noeviction, appendonly yes',
    });
  }, 600_000);

  it('an engine started while Redis is at maxmemory comes up ready and drains the stream; everything once', async () => {
    // The first cell's engines, before the stream is emptied: they would create their group again
    // (from the start), and a group left behind keeps every entry from being trimmed.
    await stopEngines();
    const cell = await openCell({ cell: 'redis-maxmemory-start', n: N, dsn: db.dsn, pool: db.pool, redis, sink });
    const env = cellEngineEnv(cell, SLOW_MACHINE_ENV);
    // Engines ran before (the group exists), and all of them are gone.
    const before = await startTestEngine(cell.dsn, env);
    await readyzWhen(before, 200, 90_000);
    await before.stop();
    await redis.client.config('RESETSTAT');
    const production = produce(cell);
    await waitFor('Redis to refuse XADDs (maxmemory reached)', production.refused, (count) => count >= 10, { timeoutMs: 60_000, intervalMs: 20 });
    const backlog = await redis.client.xlen(COMMAND_STREAM);
    const fullAt = production.acknowledged();
    const engineStartedAt = Date.now();
    engines = [await startTestEngine(cell.dsn, env)];
    await readyzWhen(engines[0] as Engine, 200, 60_000);
    await waitFor('the producers to have XADDs acknowledged again', production.acknowledged, (count) => count >= Math.min(N, fullAt + 20), { timeoutMs: 90_000, intervalMs: 50 });
    const produced = await production.done;
    await expectSettled(cell, production, produced, {
      faultEndedAt: Date.now(),
      annotate: notes(production, 'no engine while two producers filled Redis (maxmemory 3 MiB), then one started', () => {
        const resumedAt = production.acknowledgedAt.find((at) => at > engineStartedAt);
        return `${backlog} entries in the stream when the engine started; first XADD acknowledged ${resumedAt ? seconds(resumedAt - engineStartedAt) : 'never'} after its start`;
      }),
      note: 'maxmemory-policy noeviction, appendonly yes',
    });
  }, 600_000);
});
