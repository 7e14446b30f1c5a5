// Fault matrix, Redis behind Sentinel (helpers/sentinel-redis.ts: a master, a replica, one Sentinel)
// failing over while producers XADD without pause through the Sentinel (an ioredis client with
// `sentinels:`, retrying an XADD that errors, each command with its own idempotency key, counted
// only once XADD returned an id) and two engines read through MAIL_REDIS_MASTER_ADDR=sentinel://.
// The cells run in order on one set of containers, each with its own stream contents, consumer
// group and engines. A command with no delivery that the stream the engines read does not hold
// either was lost by Redis (the engines remove only entries they acknowledged, once their delivery
// was committed); each engine must log the switch of master once (the moment such a loss can happen):
//  1. SENTINEL FAILOVER (graceful): what the replica had not received when promoted, and what the
//     old master took until it was demoted, is Redis's loss, counted apart; everything else once.
//  2. the master killed (docker kill), the replica promoted: entries the old master acknowledged
//     and had not yet sent to the replica are Redis's loss, counted apart (as for Redis restarted
//     empty); everything else once.
//  1b. the same with min-replicas-to-write 1: the old master refuses writes once it notices its
//     replica left it (a narrower window, not none), and nothing is written until the replica is back.
//  1c. the same with producers confirming each XADD with WAIT 1: nothing they counted is lost.
//  3. the killed master started again (empty: no persistence): Sentinel makes it a replica of the
//     new master; nothing reads from it, nothing is lost or doubled.
//  4. the master killed again, the producer confirming each XADD with WAIT 1 (docs/deploy.md): an
//     XADD the replica did not confirm is XADDed again, so nothing the producer counted is lost —
//     and with the only replica promoted, the producer waits until another replica is back.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { metricsText, startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, startFaultSink } from '../harness/fault-sink.ts';
import { type CapturedLogs, captureLogs, createTestDatabase, readyzWhen, type TestDatabase, waitFor } from '../harness/index.ts';
import type { Account } from './helpers/account.ts';
import { type CellRun, cellEngineEnv, expectEverythingDelivered, type FaultCell, openCell } from './helpers/cell.ts';
import { engineFacts, metricSum } from './helpers/engine-facts.ts';
import { type SentinelRedis, startSentinelRedis } from './helpers/sentinel-redis.ts';
import { COMMAND_STREAM, faultCommand, produceAll, type ReplicaConfirmation, type XaddRecord } from './helpers/stream-producer.ts';

const N = 150;
const PRODUCERS = 2;
let redis: SentinelRedis;
let db: TestDatabase;
let sink: FaultSink;
let engines: Engine[] = [];

beforeAll(async () => {
  [redis, db, sink] = await Promise.all([startSentinelRedis(), createTestDatabase('fault-redis-sentinel'), startFaultSink()]);
}, 120_000);

afterAll(async () => {
  await stopEngines();
  await sink?.close();
  await db?.drop();
  await redis?.close();
});

async function stopEngines(): Promise<void> {
  await Promise.all(engines.map((engine) => engine.stop()));
  engines = [];
}

/** The cell's stream emptied, two engines reading it through the Sentinel; the first one's log kept.
 *  Every fault starts from replicas in sync (the previous cell's may still be resynchronising). */
async function openSentinelCell(name: string): Promise<FaultCell & { logs: CapturedLogs }> {
  await stopEngines();
  await redis.replicasInSync();
  const cell = await openCell({ cell: name, n: N, dsn: db.dsn, pool: db.pool, redis, sink });
  const env = cellEngineEnv(cell, { MAIL_STREAM_RECLAIM_IDLE: '5s' });
  const logs = captureLogs('core');
  engines = await Promise.all([startTestEngine(cell.dsn, env, { logger: logs.logger }), startTestEngine(cell.dsn, env)]);
  return { ...cell, logs };
}

/** The engine said, once, that the master changed from `from` to `to` (the moment Redis may have lost commands). */
function expectMasterChangeLogged(logs: CapturedLogs, from: string, to: string): void {
  const said = logs.lines.filter((line) => String(line.msg).startsWith('Redis master changed'));
  expect(said.map((line) => `${line.previousMaster} -> ${line.master}`)).toEqual([`${from} -> ${to}`]);
}

interface Production {
  progress(): number;
  done: Promise<XaddRecord[]>;
}

/** N commands, split between PRODUCERS producers writing at once, each retrying its XADD until acknowledged. */
function produce(cell: FaultCell, confirm?: ReplicaConfirmation): Production {
  let acknowledged = 0;
  const commands = Array.from({ length: cell.n }, (_, i) => faultCommand(cell.cell, i));
  const shares = Array.from({ length: PRODUCERS }, (_, p) => commands.filter((_, i) => i % PRODUCERS === p));
  const runs = shares.map((share) =>
    produceAll(redis.client, cell.cell, share, {
      deadlineMs: 90_000,
      paceMs: 10,
      onAcknowledged: () => {
        acknowledged += 1;
      },
      ...(confirm ? { confirm } : {}),
    }),
  );
  return { progress: () => acknowledged, done: Promise.all(runs).then((records) => records.flat()) };
}

const aThird = (production: Production) =>
  waitFor('a third of the commands acknowledged', production.progress, (count) => count >= N / 3, { timeoutMs: 60_000, intervalMs: 20 });

/** A metric summed over the engines (and, with `label`, over the samples that carry it). */
async function enginesSum(name: string, label = ''): Promise<number> {
  const texts = await Promise.all(engines.map((engine) => metricsText(engine)));
  const only = (text: string) => text.split('\n').filter((line) => !line.startsWith(`${name}{`) || line.includes(label)).join('\n');
  return texts.reduce((sum, text) => sum + metricSum(only(text), name), 0);
}

/** Stream entries an engine counted lost (mail_stream_entries_lost_total), for the notes and the account. */
const entriesLostCounted = () => enginesSum('mail_stream_entries_lost_total');

/** The cell's notes: the fault, the producers' longest pause, what the engines counted. */
function cellNotes(fault: string, production: Production): () => Promise<string> {
  return async () =>
    `${fault}; no XADD acknowledged for ${(longestPause(await production.done) / 1000).toFixed(1)} s; ` +
    `engines: ${await entriesLostCounted()} entries counted lost, ` +
    `${await enginesSum('mail_stream_commands_accepted_total', 'outcome="duplicate"')} commands recognised as duplicates; ${(await engineFacts(engines)).text}`;
}

/** The longest time (ms) between two acknowledged XADDs: how long the stream took no writes. */
function longestPause(produced: XaddRecord[]): number {
  const times = produced.flatMap((record) => (record.entryId === null ? [] : [record.at])).sort((a, b) => a - b);
  return times.reduce((longest, at, i) => Math.max(longest, i === 0 ? 0 : at - (times[i - 1] as number)), 0);
}

async function expectEnginesReady(): Promise<void> {
  for (const engine of engines) await readyzWhen(engine, 200);
}

/** The idempotency keys of the commands the stream holds now (on the master the engines read). */
async function keysInStream(): Promise<Set<string>> {
  const entries = await redis.client.xrange(COMMAND_STREAM, '-', '+');
  return new Set(entries.map(([, fields]) => (JSON.parse(fields[fields.indexOf('command') + 1] ?? '{}') as { idempotencyKey?: string }).idempotencyKey ?? ''));
}

/**
 * The fault is over: the rest of the commands go in, then the cell's account, asserted (nothing
 * twice, nothing lost), then the engines ready. Where Redis may lose acknowledged XADDs, a command
 * with no delivery that the stream does not hold either is Redis's loss (the engines remove only
 * entries they acknowledged, once their delivery was committed), counted apart; one the stream
 * holds and no engine delivered is Postern's.
 */
async function settle(cell: FaultCell, production: Production, run: Pick<CellRun, 'annotate' | 'note'> & { redisMayLose: boolean }): Promise<Account> {
  const faultEndedAt = Date.now();
  const produced = await production.done;
  const kept = await keysInStream();
  const { redisMayLose, ...notes } = run;
  const account = await expectEverythingDelivered(cell, { sent: [], produced }, {
    faultEndedAt,
    settleMs: 60_000,
    duplicateBound: 'zero',
    ...notes,
    ...(redisMayLose ? { destroyedBeforeRead: (record: XaddRecord) => !kept.has(record.command.idempotencyKey) } : {}),
  });
  await expectEnginesReady();
  return account;
}

describe('fault matrix: Redis Sentinel failover under continuous producers', () => {
  it('graceful SENTINEL FAILOVER mid-load: what Redis lost counted apart, every other command once', async () => {
    const cell = await openSentinelCell('sentinel-failover-graceful');
    const production = produce(cell);
    await aThird(production);
    const { from, to } = await redis.failover();
    const account = await settle(cell, production, {
      annotate: cellNotes(`master ${from} -> ${to}`, production),
      // What the replica had not received when it was promoted, and what the old master took
      // after that until it was demoted and took the new master's data.
      redisMayLose: true,
      note: `${PRODUCERS} producers through the Sentinel (no WAIT), 2 engines; SENTINEL FAILOVER after a third`,
    });
    console.log(`[sentinel] graceful failover: ${account.destroyedBeforeRead} acknowledged XADDs lost by Redis, engines counted ${await entriesLostCounted()}`);
    expectMasterChangeLogged(cell.logs, from, to);
  }, 180_000);

  it('graceful SENTINEL FAILOVER with min-replicas-to-write 1: what Redis lost counted apart, every other command once', async () => {
    const cell = await openSentinelCell('sentinel-failover-min-replicas');
    // The old master refuses writes (NOREPLICAS) once it notices its replica left it to be promoted;
    // what it acknowledged before, and the replica had not received, is still lost (one run lost 1).
    await redis.configSetAll('min-replicas-to-write', '1');
    try {
      const production = produce(cell);
      await aThird(production);
      const { from, to } = await redis.failover();
      const account = await settle(cell, production, {
        redisMayLose: true,
        annotate: cellNotes(`master ${from} -> ${to}`, production),
        note: `${PRODUCERS} producers (no WAIT), min-replicas-to-write 1 on every node, 2 engines; SENTINEL FAILOVER after a third`,
      });
      console.log(`[sentinel] graceful failover, min-replicas-to-write 1: ${account.destroyedBeforeRead} acknowledged XADDs lost by Redis`);
    } finally {
      await redis.configSetAll('min-replicas-to-write', '0');
    }
    expect(await entriesLostCounted()).toBe(0);
  }, 180_000);

  it('graceful SENTINEL FAILOVER mid-load, producers confirming with WAIT 1: nothing they counted is lost', async () => {
    const cell = await openSentinelCell('sentinel-failover-wait');
    const production = produce(cell, { replicas: 1, timeoutMs: 500 });
    await aThird(production);
    const { from, to } = await redis.failover();
    await settle(cell, production, {
      redisMayLose: false,
      annotate: cellNotes(`master ${from} -> ${to}`, production),
      note: `${PRODUCERS} producers with WAIT 1 500, 2 engines; SENTINEL FAILOVER after a third`,
    });
    expectMasterChangeLogged(cell.logs, from, to);
  }, 180_000);

  it('master killed mid-load: what Redis lost counted apart, every other command once', async () => {
    const cell = await openSentinelCell('sentinel-master-killed');
    const production = produce(cell);
    await aThird(production);
    const { from, to } = await redis.killMaster();
    const account = await settle(cell, production, {
      annotate: cellNotes(`master ${from} killed -> ${to}`, production),
      // Acknowledged by the killed master before it died and not yet on its replica.
      redisMayLose: true,
      note: `${PRODUCERS} producers through the Sentinel (no WAIT), 2 engines; docker kill of the master after a third`,
    });
    console.log(`[sentinel] master killed: ${account.destroyedBeforeRead} acknowledged XADDs lost by Redis, engines counted ${await entriesLostCounted()}`);
    expectMasterChangeLogged(cell.logs, from, to);
  }, 180_000);

  it('the killed master back, empty: made a replica of the new master, never read from', async () => {
    const cell = await openSentinelCell('sentinel-old-master-back');
    const master = await redis.currentMaster();
    const killed = redis.deadNodes()[0] as StartedTestContainer;
    expect(killed).toBeDefined();
    const production = produce(cell);
    await aThird(production);
    await redis.restart(killed);
    const back = `${await redis.ipOf(killed)}:6379`;
    await waitFor('the old master a replica of the new one, in sync', () => redis.replication(back), (info) => info.role === 'slave' && info.master_link_status === 'up', {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await settle(cell, production, {
      redisMayLose: false,
      annotate: cellNotes(`${back} back as a replica of ${master}`, production),
      note: `${PRODUCERS} producers, 2 engines; the killed master started again (empty) after a third`,
    });
    expect(await redis.currentMaster()).toBe(master);
    expect(cell.logs.lines.filter((line) => String(line.msg).startsWith('Redis master changed'))).toEqual([]);
    // No engine connection on the returned node (connection names end in :commands / :notifications).
    expect(await redis.clientNames(back)).not.toContainEqual(expect.stringMatching(/:(commands|notifications)$/));
    expect(await entriesLostCounted()).toBe(0);
  }, 180_000);

  it('master killed mid-load, producers confirming with WAIT 1: nothing they counted is lost', async () => {
    const cell = await openSentinelCell('sentinel-master-killed-wait');
    let unconfirmed = 0;
    const production = produce(cell, { replicas: 1, timeoutMs: 500, onUnconfirmed: () => { unconfirmed += 1; } });
    await aThird(production);
    const { from, to } = await redis.killMaster();
    // The only replica is the master now: WAIT 1 confirms nothing until the killed node is back.
    const unconfirmedAtKill = unconfirmed;
    await waitFor('a WAIT unconfirmed on the promoted replica', () => unconfirmed, (n) => n > unconfirmedAtKill, { timeoutMs: 30_000, intervalMs: 50 });
    const waitingAt = production.progress();
    await redis.restart(redis.deadNodes()[0] as StartedTestContainer);
    const notes = cellNotes(`master ${from} killed -> ${to}`, production);
    await settle(cell, production, {
      redisMayLose: false,
      annotate: async () => `${unconfirmed} XADDs unconfirmed by WAIT and XADDed again; ${await notes()}`,
      note: `${PRODUCERS} producers with WAIT 1 500, 2 engines; docker kill of the master after a third, started again later`,
    });
    console.log(`[sentinel] WAIT: ${unconfirmed} unconfirmed XADDs retried; ${waitingAt} acknowledged before the killed node was back`);
  }, 180_000);
});
