// Stream intake benchmark (not a test: it prints figures, asserts nothing).
//   node bench/core/stream-intake.ts   [BENCH_ROUNDS=3 BENCH_N=20000 BENCH_LATENCY_SECONDS=10 BENCH_REDIS_URL=]
//   node bench/core/stream-intake.ts --baseline <git-ref>
// How fast the engine takes delivery commands from the Redis stream mail:delivery_commands
// (apps/core/src/intake/consume-stream.ts: reads through stream-read.ts's script, waits through
// stream-doorbell.ts, each command decoded and accepted in one transaction of its delivery and its
// idempotency reservation), and the latency from XADD to the committed delivery row.
// Uses the machine's local PostgreSQL as run.ts does (a throwaway database) and a Redis of its own
// (bench-redis.ts: /usr/bin/redis-server on a free port, a temporary directory, no persistence) or
// BENCH_REDIS_URL. Run it under `flock /tmp/postern-bench.lock` so that benchmarks never overlap.
//
// The engine cannot run its intake alone, so it runs as it is, in stub mode, with sending held:
// one attempt worker, no claim ahead, a claim batch of one, and a relay whose first send does not
// finish until the run is over (engine-adapter.ts, holdSends). A plug delivery, urgent and overdue,
// is queued before the engine starts: the scheduler's first claim takes it, its one worker waits on
// it, and nothing else is claimed or sent while the intake runs (each run checks that the relay saw
// one message). The engine runs in a process of its own (engine-host.ts), whose CPU is measured.
//
// Throughput, in interleaved rounds (medians of BENCH_ROUNDS with ranges): the stream is filled with
// BENCH_N commands first (stream-commands.ts: a mix of rendered and template commands, each with an
// idempotency key of its own), then timed, over the same Redis and PostgreSQL:
//  - Redis floor: a bare ioredis loop of XREADGROUP COUNT 100 + one XACK per read, nothing else;
//  - PostgreSQL floor: the same commands, decoded beforehand, accepted one after the other by
//    acceptCommand, the function the engine's intake calls (one transaction per command), no Redis;
//  - the engine: from the moment it has started (its stream consumer about to make its first read)
//    to the BENCH_N-th command accepted (counted just after its transaction committed).
// Each prints commands/s, its ratio to each floor, and the CPU of the process that ran it per command.
// Then the latency: commands XADDed at a steady pace (open loop) at half the engine's median rate
// for BENCH_LATENCY_SECONDS, from the XADD's reply to the commit of its delivery row. The engine's
// one consumer takes the stream in order and every command is accepted, so the k-th command
// accepted is the k-th XADDed, or with MAIL_STREAM_CONCURRENCY above 1 one of its neighbours in the
// same read: its commit is the moment the engine counts it (no query, no LISTEN that would load the
// database meanwhile). p50/p90/p99/max, and how busy the machine's CPUs were.
//
// With --baseline <git-ref> (bench/compare/variants.ts), that ref's engine and this tree's each run
// in their own host process, interleaved in every round and in the latency run (e109eff: before the
// reads went through stream-read.ts's script).
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, runMigrations } from '@postern/shared';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { roundOrder } from '../compare/round-order.ts';
import { comparisonTable, record, type Variants, variantsFromArgs } from '../compare/variants.ts';
import { watchMachineCpu } from '../machine/cpu.ts';
import { summarize } from '../mta/figures.ts';
import { ADMIN_DSN, databaseDsn } from '../postgres/admin-dsn.ts';
import { type BenchRedis, startBenchRedis } from './bench-redis.ts';
import { enqueueDeliveries } from './deliveries.ts';
import { acceptAloneLoop, loadEngineTree } from './engine-adapter.ts';
import type { HostRun } from './engine-host.ts';
import { ms, percentile, rate } from './figures.ts';
import { type Host, startHost, uptime, withinDeadline } from './host-process.ts';
import { COMMAND_STREAM, commandEntries, decodedCommands, type EntryFields, fillStream, redisFloor } from './stream-commands.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const N = Number(env.BENCH_N ?? 20_000);
const LATENCY_SECONDS = Number(env.BENCH_LATENCY_SECONDS ?? 10);
/** Commands the engine takes before the paced ones, so its connections and plans are warm. */
const WARM = 1_000;
const tag = randomUUID().slice(0, 8);
const postern = { db: `postern_bench_${tag}`, dsn: databaseDsn(`postern_bench_${tag}`) };
const REDIS_FLOOR = 'Redis floor (XREADGROUP COUNT 100 + XACK)';
const PG_FLOOR = 'PostgreSQL floor (acceptCommand, one transaction per command)';

interface Measured {
  perSecond: number;
  cpuUsPerCommand: number;
}

/** Wall and CPU time of this process around `work`, per command. */
async function timed(count: number, work: () => Promise<number>, what: string): Promise<Measured> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const done = await withinDeadline(work(), what);
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - t0) / 1000;
  if (done !== count) throw new Error(`${what}: ${done} of ${count} commands`);
  return { perSecond: count / seconds, cpuUsPerCommand: (cpu.user + cpu.system) / count };
}

/** The delivery that holds the engine's one worker (see the header): urgent and overdue, so the
 *  scheduler's first claim takes it before any command's delivery. */
async function queuePlug(pool: pg.Pool, label: string): Promise<void> {
  const [id] = await enqueueDeliveries(pool, 1, label);
  await pool.query(`UPDATE mail.deliveries SET priority = 0, next_attempt_at = now() - interval '1 hour' WHERE id = $1`, [id]);
}

async function createdFor(pool: pg.Pool, label: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.deliveries WHERE starts_with(idempotency_key, $1)', [`${label}-`]);
  return rows[0]?.n ?? 0;
}

function intakeRun(redis: BenchRedis, count: number, times: boolean): Extract<HostRun, { kind: 'intake' }> {
  const options = { dsn: postern.dsn, mode: 'stub' as const, smtpAddr: null, concurrency: 1, claimBatch: 1, claimAhead: '0', redisAddr: redis.addr };
  return { kind: 'intake', options: redis.password ? { ...options, redisPassword: redis.password } : options, count, times };
}

/** One engine run over a stream filled beforehand; checks that every command made its delivery and
 *  that nothing but the plug was sent. */
async function engineRun(host: Host, redis: BenchRedis, client: Redis, pool: pg.Pool, label: string): Promise<Measured & { seconds: number }> {
  await fillStream(client, commandEntries(label, N));
  await pool.query('VACUUM ANALYZE mail.deliveries');
  await queuePlug(pool, `${label}-plug`);
  const answer = await host.run(intakeRun(redis, N, false));
  if (answer.sends !== 1) throw new Error(`${host.variant.name}: the relay was handed ${answer.sends} messages during the run, not the plug alone`);
  const created = await createdFor(pool, label);
  if (created !== N) throw new Error(`${host.variant.name}: ${created} deliveries of ${N} commands`);
  return { perSecond: answer.perSecond, cpuUsPerCommand: answer.cpuUsPerJob, seconds: answer.seconds };
}

/** Adds `entries` to the stream at `perSecond` (open loop: the i-th is due i/perSecond seconds after
 *  the start, however Redis or the engine keep up) over one connection, so that the stream's order
 *  is this order; each one's XADD reply time, process.hrtime.bigint(). */
async function pacedXadd(client: Redis, entries: readonly EntryFields[], perSecond: number): Promise<{ addedAt: bigint[]; seconds: number }> {
  const addedAt: bigint[] = new Array(entries.length);
  const replies: Promise<unknown>[] = [];
  const t0 = performance.now();
  let issued = 0;
  while (issued < entries.length) {
    const due = Math.min(entries.length, Math.floor(((performance.now() - t0) * perSecond) / 1000));
    for (; issued < due; issued += 1) {
      const index = issued;
      replies.push(
        client.xadd(COMMAND_STREAM, '*', ...(entries[index] as EntryFields)).then(() => {
          addedAt[index] = process.hrtime.bigint();
        }),
      );
    }
    if (issued < entries.length) await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 + ((issued + 1) * 1000) / perSecond - performance.now())));
  }
  await Promise.all(replies);
  return { addedAt, seconds: (performance.now() - t0) / 1000 };
}

/** The group's read position, without touching what the engine reads: waits until it has read and
 *  acknowledged `count` entries (the warm-up). */
async function waitForGroup(client: Redis, count: number): Promise<void> {
  for (;;) {
    const groups = (await client.xinfo('GROUPS', COMMAND_STREAM).catch(() => [])) as unknown[][];
    for (const flat of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), flat[i + 1]);
      if (info.get('name') === 'postern-core' && Number(info.get('entries-read')) >= count && Number(info.get('pending')) === 0) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function latencyRun(host: Host, redis: BenchRedis, client: Redis, pool: pg.Pool, perSecond: number): Promise<string> {
  const label = `latency-${host.variant.name.replace(/\W/g, '')}`;
  const count = Math.max(1, Math.round(perSecond * LATENCY_SECONDS));
  const paced = commandEntries(label, count);
  await fillStream(client, commandEntries(`warm-${label}`, WARM));
  await pool.query('VACUUM ANALYZE mail.deliveries');
  await queuePlug(pool, `${label}-plug`);
  const answer = host.run(intakeRun(redis, WARM + count, true));
  // Rejected before the warm-up ends: said at once rather than as a wait that never ends.
  answer.catch(() => {});
  await withinDeadline(Promise.race([waitForGroup(client, WARM), answer.then(() => {})]), 'the warm-up');
  const machine = watchMachineCpu();
  const { addedAt, seconds } = await pacedXadd(client, paced, perSecond);
  const { acceptedAt, sends } = await answer;
  const cpu = machine.stop();
  if (sends !== 1) throw new Error(`${host.variant.name}: the relay was handed ${sends} messages during the latency run, not the plug alone`);
  const created = await createdFor(pool, label);
  if (created !== count) throw new Error(`${host.variant.name}: ${created} deliveries of ${count} paced commands`);
  const latencies = addedAt.map((at, i) => Number(BigInt(acceptedAt[WARM + i] as string) - at) / 1e6).sort((a, b) => a - b);
  return (
    `| ${host.variant.name} | ${rate(perSecond)}/s (achieved ${rate(count / seconds)}/s) | ${latencies.length} | ${ms(percentile(latencies, 50))} | ` +
    `${ms(percentile(latencies, 90))} | ${ms(percentile(latencies, 99))} | ${ms(latencies.at(-1) ?? Number.NaN)} | ${cpu} |`
  );
}

function cpuMs(us: number): string {
  return (us / 1000).toFixed(3);
}

async function main(): Promise<void> {
  const variants: Variants = await variantsFromArgs();
  console.log(`# postern stream intake bench — ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), Node ${process.version}`);
  console.log(`# before: ${uptime()}`);
  console.log(`# rounds=${ROUNDS} N=${N} latency=${LATENCY_SECONDS} s at half each engine's median rate`);
  const adminClient = new pg.Client({ connectionString: ADMIN_DSN });
  await adminClient.connect();
  console.log(`# ${(await adminClient.query<{ version: string }>('SELECT version()')).rows[0]?.version}`);
  await adminClient.query(`CREATE DATABASE ${pg.escapeIdentifier(postern.db)}`);
  const pool = new pg.Pool({ connectionString: postern.dsn, max: 4 });
  pool.on('error', () => {});
  const redis = await startBenchRedis(env.BENCH_REDIS_URL);
  console.log(`# ${redis.describe}`);
  const client = redis.connect();
  const hosts: Host[] = [];
  try {
    await runMigrations({ dsn: postern.dsn, logger: createLogger('bench', 'warn') });
    const tree = await loadEngineTree(root);
    for (const variant of variants.list) hosts.push(await startHost(variant));
    const rates = new Map<string, Map<string, number[]>>();
    const cpu = new Map<string, Map<string, number[]>>();
    const floors = { redis: [] as number[], pg: [] as number[], redisCpu: [] as number[], pgCpu: [] as number[] };
    for (let round = 1; round <= ROUNDS; round += 1) {
      console.log(`# round ${round}: ${uptime()}`);
      await fillStream(client, commandEntries(`r${round}-redis`, N));
      const r = await timed(N, () => redisFloor(client, N), 'the Redis floor');
      floors.redis.push(r.perSecond);
      floors.redisCpu.push(r.cpuUsPerCommand);
      console.log(`round ${round} ${REDIS_FLOOR}: ${rate(r.perSecond)}/s, ${cpuMs(r.cpuUsPerCommand)} ms of CPU per command in the bench's process`);
      const commands = decodedCommands(commandEntries(`r${round}-pg`, N));
      await pool.query('VACUUM ANALYZE mail.deliveries');
      const p = await timed(N, () => acceptAloneLoop(tree, pool, commands), 'the PostgreSQL floor');
      floors.pg.push(p.perSecond);
      floors.pgCpu.push(p.cpuUsPerCommand);
      console.log(`round ${round} ${PG_FLOOR}: ${rate(p.perSecond)}/s, ${cpuMs(p.cpuUsPerCommand)} ms of CPU per command in the bench's process`);
      for (const host of roundOrder(hosts, round)) {
        const e = await engineRun(host, redis, client, pool, `r${round}-${host.variant.name.replace(/\W/g, '')}`);
        record(rates, 'engine intake, commands/s', host.variant.name, e.perSecond);
        record(cpu, "engine process's CPU per command, ms", host.variant.name, e.cpuUsPerCommand / 1000);
        console.log(`round ${round} engine ${host.variant.name}: ${rate(e.perSecond)}/s (${N} in ${e.seconds.toFixed(2)} s), ${cpuMs(e.cpuUsPerCommand)} ms of CPU per command in the engine's process`);
      }
    }

    // The medians of comparisonTable's (bench/compare/variants.ts), so the two tables agree.
    const median = (values: number[]) => summarize(values) ?? { median: Number.NaN, min: Number.NaN, max: Number.NaN };
    const redisMedian = median(floors.redis).median;
    const pgMedian = median(floors.pg).median;
    console.log(`\n${ROUNDS} interleaved rounds of ${N} commands: median (range)\n`);
    console.log('| run | commands/s | ratio to Redis floor | ratio to PostgreSQL floor | CPU ms per command (its process) |\n| --- | ---: | ---: | ---: | ---: |');
    const line = (name: string, perSecond: number[], cpuUs: number[]) => {
      const s = median(perSecond);
      const c = median(cpuUs);
      console.log(
        `| ${name} | ${rate(s.median)} (${rate(s.min)}–${rate(s.max)}) | ${(s.median / redisMedian).toFixed(3)} | ${(s.median / pgMedian).toFixed(3)} | ${cpuMs(c.median)} (${cpuMs(c.min)}–${cpuMs(c.max)}) |`,
      );
    };
    line(REDIS_FLOOR, floors.redis, floors.redisCpu);
    line(PG_FLOOR, floors.pg, floors.pgCpu);
    for (const host of hosts) {
      const name = host.variant.name;
      line(`engine, ${name}`, rates.get('engine intake, commands/s')?.get(name) ?? [], (cpu.get("engine process's CPU per command, ms")?.get(name) ?? []).map((v) => v * 1000));
    }
    if (variants.comparing) {
      console.log(`\nbuilds compared: median (range), and the ratio to ${variants.list[0]?.name}:\n`);
      console.log(comparisonTable(new Map([...rates, ...cpu]), variants.list, (value) => (value < 10 ? value.toFixed(3) : rate(value))));
    }

    console.log(`\nXADD-to-commit latency (ms, XADD replied → delivery row committed), ${LATENCY_SECONDS} s paced at half each engine's median rate, after ${WARM} warm-up commands:`);
    console.log('| engine | pace | samples | p50 | p90 | p99 | max | machine meanwhile |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const host of hosts) {
      const engineRate = median(rates.get('engine intake, commands/s')?.get(host.variant.name) ?? []).median;
      console.log(await latencyRun(host, redis, client, pool, engineRate / 2));
    }
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.malformed_commands');
    if ((rows[0]?.n ?? 0) > 0) console.log(`# warning: ${rows[0]?.n} commands were quarantined: the figures include refusals`);
  } finally {
    console.log(`\n# after: ${uptime()}`);
    for (const host of hosts) await host.stop();
    client.disconnect();
    await redis.stop();
    await pool.end();
    await variants.close();
    await adminClient.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(postern.db)} WITH (FORCE)`);
    await adminClient.end();
  }
}

await main();
