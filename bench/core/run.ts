// Delivery engine benchmark (not a test: it prints figures, asserts nothing).
//   node bench/core/run.ts   [BENCH_ROUNDS=3 BENCH_N=50000 BENCH_SMTP_N=20000 BENCH_K=32 BENCH_BATCH=32 BENCH_AHEAD=
//                             BENCH_ROWS=1000000 BENCH_LATENCY_SECONDS=10 BENCH_LATENCY_RATE=[r1,r2,...] BENCH_RUNS=graphile,sql,sketch,stub,smtp,latency]
// Uses the machine's local PostgreSQL (127.0.0.1:5432, user postgres, trust auth; BENCH_POSTGRES_ADMIN_DSN)
// with two throwaway databases on that server, one for Postern and one for graphile-worker; installs
// graphile-worker into ~/.cache/postern/bench and postfix (for smtp-sink) when missing. Run it under
// `flock /tmp/postern-bench.lock` so that benchmarks never overlap.
// Throughput, in interleaved rounds (one of each per round, medians of BENCH_ROUNDS with ranges), each
// timed from its first job's start to its last outcome, so no one's startup counts:
//  - graphile-worker's perfTest: N no-op jobs drained by one worker of K slots (graphile-worker.ts);
//  - SQL alone: the engine's claim and outcome statements in a bare loop of K clients, no engine;
//  - the same loop over a sketch of a narrow due-work table (narrow-queue-sketch.ts): what that
//    schema change would be worth, measured rather than guessed;
//  - the engine in stub mode (MAIL_SMTP_MODE=stub), K workers, end to end;
//  - the engine in smtp mode to Postfix's smtp-sink (smtp-sink.ts), K workers, end to end.
// Postern's deliveries table holds BENCH_ROWS finished rows first, so claims run against a big table.
// Then enqueue-to-send latency: deliveries queued at a steady pace (paced-enqueue.ts) at half the
// median rate of each mode (or at each rate BENCH_LATENCY_RATE lists), from the moment the producer
// saw its INSERT commit to the moment the engine handed the message to the relay. Each row says how
// busy the machine's CPUs were meanwhile: the producer's INSERTs are work the throughput runs (whose
// queue is filled before their clock starts) never do, so half their rate is not half the machine.
//
//   node bench/core/run.ts --baseline <git-ref> [--tracing on]
// compares builds of the engine instead (bench/compare/variants.ts): the ref's ("baseline"), this
// tree's ("current") and, with --tracing on, this tree's exporting every span ("tracing on"), each
// in a process of its own (engine-host.ts) on the same database, interleaved in every round of the
// stub and smtp runs (BENCH_RUNS defaults to stub,smtp); it prints each one's median rate and CPU
// per delivery with their ranges and ratios.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { roundOrder } from '../compare/round-order.ts';
import { comparisonTable, record, type Variants, variantsFromArgs } from '../compare/variants.ts';
import { watchMachineCpu } from '../machine/cpu.ts';
import { ADMIN_DSN, databaseDsn } from '../postgres/admin-dsn.ts';
import { type AutoAnalyze, startAutoAnalyze } from '../postgres/auto-analyze.ts';
import { enqueueDeliveries, fillHistory, statusesOf } from './deliveries.ts';
import { type BenchEngineOptions, type EngineTree, engineDetail, loadEngineTree, sqlAloneLoop, startBenchEngine } from './engine-adapter.ts';
import { FirstJobClock, ms, percentile, rate, spreadOf, type Timed, watchGcPauses } from './figures.ts';
import { GRAPHILE_WORKER_VERSION, loadGraphileWorker, runGraphilePerfTest } from './graphile-worker.ts';
import { type Host, startHost, uptime, withinDeadline } from './host-process.ts';
import { enqueueSketch, sketchLoop } from './narrow-queue-sketch.ts';
import { pacedEnqueue } from './paced-enqueue.ts';
import { type SmtpSink, startSmtpSink } from './smtp-sink.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const ROWS = Number(env.BENCH_ROWS ?? 1_000_000);
const N = Number(env.BENCH_N ?? 50_000);
const SMTP_N = Number(env.BENCH_SMTP_N ?? 20_000);
const K = Number(env.BENCH_K ?? 32);
const BATCH = Number(env.BENCH_BATCH ?? 32);
const AHEAD = env.BENCH_AHEAD;
const LATENCY_SECONDS = Number(env.BENCH_LATENCY_SECONDS ?? 10);
const LATENCY_RATES = env.BENCH_LATENCY_RATE ? env.BENCH_LATENCY_RATE.split(',').map(Number) : null;
if (LATENCY_RATES?.some((r) => !(Number.isFinite(r) && r > 0))) {
  throw new Error(`BENCH_LATENCY_RATE=${env.BENCH_LATENCY_RATE}: expected deliveries per second, one or more positive numbers separated by commas`);
}
const variants: Variants = await variantsFromArgs();
const RUNS = new Set((env.BENCH_RUNS ?? (variants.comparing ? 'stub,smtp' : 'graphile,sql,sketch,stub,smtp,latency')).split(','));
{
  // A misspelt run would otherwise be skipped silently: a bench that measured nothing.
  const known = ['graphile', 'sql', 'sketch', 'stub', 'smtp', 'latency'];
  const unknown = [...RUNS].filter((run) => !known.includes(run));
  if (unknown.length > 0) throw new Error(`unknown BENCH_RUNS: ${unknown.join(', ')} (known: ${known.join(', ')})`);
}
const SINK_PORT = Number(env.BENCH_SMTP_SINK_PORT ?? 2626);
const tag = randomUUID().slice(0, 8);
const postern = { db: `postern_bench_${tag}`, dsn: databaseDsn(`postern_bench_${tag}`) };
const graphile = { db: `postern_bench_${tag}_gw`, dsn: databaseDsn(`postern_bench_${tag}_gw`) };

type RunName = 'graphile' | 'sql' | 'sketch' | 'stub' | 'smtp';
const LABELS: Record<RunName, string> = {
  graphile: `graphile-worker ${GRAPHILE_WORKER_VERSION} perfTest, K=${K}`,
  sql: `SQL alone (claim + outcome statement), K=${K}`,
  sketch: `SQL alone, sketch of a narrow due-work table (not Postern's schema), K=${K}`,
  stub: `Postern engine, stub mode, K=${K}`,
  smtp: `Postern engine, smtp mode to smtp-sink, K=${K}`,
};

function engineOptions(mode: 'stub' | 'smtp', sink: SmtpSink | null): BenchEngineOptions {
  return {
    dsn: postern.dsn,
    templateDir: path.join(root, 'templates'),
    mode,
    smtpAddr: mode === 'smtp' ? (sink?.addr ?? null) : null,
    concurrency: K,
    claimBatch: BATCH,
    claimAhead: AHEAD,
  };
}

/** This process's CPU per job: where the bench runs the engine, or graphile-worker, and nothing else. */
function cpuOf(timed: Timed): string {
  return `${Math.round(timed.cpuUsPerJob)} µs of CPU per job in this process`;
}

async function engineRun(tree: EngineTree, pool: pg.Pool, mode: 'stub' | 'smtp', count: number, sink: SmtpSink | null, round: number): Promise<{ perSecond: number; detail: string }> {
  const ids = await enqueueDeliveries(pool, count, `${mode}-${round}`);
  // A delivery's job starts when it is handed to the relay, as a graphile-worker job's when its task runs.
  const clock = new FirstJobClock();
  const engine = await startBenchEngine(tree, { ...engineOptions(mode, sink), onHandOver: () => clock.mark() });
  await withinDeadline(engine.committed(count), `the ${mode} engine run`);
  const timed = clock.stop(count);
  await engine.stop();
  const statuses = await statusesOf(pool, ids);
  if (statuses.sent !== count) throw new Error(`${mode} run: expected ${count} sent, got ${JSON.stringify(statuses)}`);
  return { perSecond: timed.perSecond, detail: `${count} in ${timed.seconds.toFixed(2)} s, ${cpuOf(timed)}; ${engineDetail(engine)}` };
}

async function sqlRun(tree: EngineTree, pool: pg.Pool, round: number): Promise<{ perSecond: number; detail: string }> {
  await enqueueDeliveries(pool, N, `sql-${round}`);
  const t0 = performance.now();
  const finished = await withinDeadline(sqlAloneLoop(tree, pool, K, BATCH), 'the SQL-alone loop');
  const seconds = (performance.now() - t0) / 1000;
  return { perSecond: finished / seconds, detail: `${finished} in ${seconds.toFixed(2)} s` };
}

async function sketchRun(pool: pg.Pool, round: number): Promise<{ perSecond: number; detail: string }> {
  await enqueueSketch(pool, N, `sketch-${round}`);
  const t0 = performance.now();
  const finished = await withinDeadline(sketchLoop(pool, K, BATCH), 'the sketch loop');
  const seconds = (performance.now() - t0) / 1000;
  if (finished !== N) throw new Error(`sketch run: expected ${N} finished, got ${finished}`);
  return { perSecond: finished / seconds, detail: `${finished} in ${seconds.toFixed(2)} s` };
}

async function latencyRun(tree: EngineTree, pool: pg.Pool, mode: 'stub' | 'smtp', perSecond: number, sink: SmtpSink | null): Promise<{ row: string; detail: string }> {
  const handedOver = new Map<string, bigint>();
  const engine = await startBenchEngine(tree, { ...engineOptions(mode, sink), onHandOver: (id, at) => handedOver.set(id, at) });
  try {
    // Warm up (prepared statements, connections, the relay's pool) before anything is timed.
    const warm = 4 * K;
    await enqueueDeliveries(pool, warm, `warm-${mode}`);
    await withinDeadline(engine.committed(warm), 'the warm-up');
    const count = Math.round(perSecond * LATENCY_SECONDS);
    const pauses = watchGcPauses();
    const machine = watchMachineCpu();
    const produced = await withinDeadline(pacedEnqueue({ dsn: postern.dsn, rate: perSecond, count, label: `paced-${mode}` }), 'the paced enqueue');
    await withinDeadline(engine.committed(warm + count), `the ${mode} latency run`);
    const gc = pauses.stop();
    const cpu = machine.stop();
    const latencies: number[] = [];
    for (const [id, committedAt] of produced.committedAt) {
      const at = handedOver.get(id);
      if (at !== undefined) latencies.push(Number(at - committedAt) / 1e6);
    }
    latencies.sort((a, b) => a - b);
    const missing = count - latencies.length;
    const row = `| ${mode} | ${rate(perSecond)}/s (achieved ${rate(count / produced.seconds)}/s, ${produced.statements} INSERTs) | ${latencies.length}${missing > 0 ? ` (${missing} not handed over)` : ''} | ${ms(percentile(latencies, 50))} | ${ms(percentile(latencies, 90))} | ${ms(percentile(latencies, 99))} | ${ms(latencies.at(-1) ?? Number.NaN)} |`;
    return { row, detail: `${mode} at ${rate(perSecond)}/s: ${cpu}; ${engineDetail(engine)}; ${gc}` };
  } finally {
    await engine.stop();
  }
}

async function main(): Promise<void> {
  const order = (['graphile', 'sql', 'sketch', 'stub', 'smtp'] as const).filter((run) => RUNS.has(run));
  console.log(`# postern core bench — ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), Node ${process.version}`);
  console.log(`# before: ${uptime()}`);
  console.log(`# rounds=${ROUNDS} N=${N} N(smtp)=${SMTP_N} K=${K} claim batch=${BATCH} claim-ahead=${AHEAD ?? 'default'} history rows=${ROWS}`);
  const worker = RUNS.has('graphile') ? loadGraphileWorker() : null;
  const adminClient = new pg.Client({ connectionString: ADMIN_DSN });
  await adminClient.connect();
  console.log(`# ${(await adminClient.query<{ version: string }>('SELECT version()')).rows[0]?.version}`);
  await adminClient.query(`CREATE DATABASE ${pg.escapeIdentifier(postern.db)}`);
  await adminClient.query(`CREATE DATABASE ${pg.escapeIdentifier(graphile.db)}`);
  const needsSink = RUNS.has('smtp');
  const sink = needsSink ? await startSmtpSink(SINK_PORT) : null;
  const pool = new pg.Pool({ connectionString: postern.dsn, max: K + 4 });
  pool.on('error', () => {});
  const analyzers: AutoAnalyze[] = [];
  try {
    await runMigrations({ dsn: postern.dsn, logger: createLogger('bench', 'warn') });
    const t = performance.now();
    await fillHistory(pool, ROWS);
    console.log(`# filled ${ROWS} finished deliveries in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    // Both databases, so neither side runs on plans made while its tables were empty.
    for (const dsn of [postern.dsn, graphile.dsn]) analyzers.push(await startAutoAnalyze(dsn));
    if (analyzers.some((analyzer) => !analyzer.autovacuum)) {
      console.log('# the server\'s autovacuum is off: the bench analyzes the tables it fills as autovacuum would (bench/postgres/auto-analyze.ts)');
    }

    if (variants.comparing) {
      await compareBuilds(pool, sink);
      return;
    }
    const tree = await loadEngineTree(root);
    const rates: Record<RunName, number[]> = { graphile: [], sql: [], sketch: [], stub: [], smtp: [] };
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const run of roundOrder(order, round)) {
        await pool.query('VACUUM ANALYZE mail.deliveries');
        const result =
          run === 'graphile' && worker
            ? await runGraphilePerfTest(worker, graphile.dsn, N, K).then((t) => ({ perSecond: t.perSecond, detail: `${N} in ${t.seconds.toFixed(2)} s, ${cpuOf(t)}` }))
            : run === 'sql'
              ? await sqlRun(tree, pool, round)
              : run === 'sketch'
                ? await sketchRun(pool, round)
              : await engineRun(tree, pool, run === 'stub' ? 'stub' : 'smtp', run === 'smtp' ? SMTP_N : N, sink, round);
        rates[run].push(result.perSecond);
        console.log(`round ${round} ${LABELS[run]}: ${rate(result.perSecond)}/s (${result.detail})`);
      }
    }

    const reference = rates.graphile.length > 0 ? spreadOf(rates.graphile).median : null;
    if (order.length > 0) console.log(`\n| run | median /s | range /s | ratio to graphile-worker |\n| --- | ---: | ---: | ---: |`);
    for (const run of order) {
      const spread = spreadOf(rates[run]);
      const ratio = reference ? `${(spread.median / reference).toFixed(2)}×` : '—';
      console.log(`| ${LABELS[run]} | ${rate(spread.median)} | ${rate(spread.min)}–${rate(spread.max)} | ${ratio} |`);
    }

    if (RUNS.has('latency')) {
      const paced = LATENCY_RATES ? LATENCY_RATES.map((r) => `${rate(r)}/s`).join(', ') : 'half the median rate';
      console.log(`\nenqueue-to-send latency (ms, INSERT committed → handed to the relay), ${LATENCY_SECONDS} s paced at ${paced}:`);
      console.log('| mode | pace | samples | p50 | p90 | p99 | max |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |');
      const details: string[] = [];
      for (const mode of ['stub', 'smtp'] as const) {
        if (mode === 'smtp' && !sink) continue;
        const median = rates[mode].length > 0 ? spreadOf(rates[mode]).median : null;
        const paces = LATENCY_RATES ?? (median ? [median / 2] : []);
        for (const pace of paces) {
          await pool.query('VACUUM ANALYZE mail.deliveries');
          const { row, detail } = await latencyRun(tree, pool, mode, pace, sink);
          console.log(row);
          details.push(detail);
        }
      }
      for (const detail of details) console.log(detail);
    }
  } finally {
    console.log(`\n# after: ${uptime()}`);
    for (const analyzer of analyzers) await analyzer.stop();
    await pool.end();
    await sink?.stop();
    await variants.close();
    await adminClient.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(postern.db)} WITH (FORCE)`);
    await adminClient.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(graphile.db)} WITH (FORCE)`);
    await adminClient.end();
  }
}

/** The stub and smtp runs for every build, interleaved: in each round each run drains the same
 *  number of fresh deliveries with each build's engine in turn. */
async function compareBuilds(pool: pg.Pool, sink: SmtpSink | null): Promise<void> {
  const hosts: Host[] = [];
  try {
    for (const variant of variants.list) hosts.push(await startHost(variant));
    const runs = (['stub', 'smtp'] as const).filter((run) => RUNS.has(run));
    const rates = new Map<string, Map<string, number[]>>();
    const cpu = new Map<string, Map<string, number[]>>();
    for (let round = 1; round <= ROUNDS; round += 1) {
      console.log(`# round ${round}: ${uptime()}`);
      for (const mode of runs) {
        for (const host of roundOrder(hosts, round)) {
          const count = mode === 'smtp' ? SMTP_N : N;
          await pool.query('VACUUM ANALYZE mail.deliveries');
          const ids = await enqueueDeliveries(pool, count, `${host.variant.name.replace(/\W/g, '')}-${mode}-${round}`);
          const { templateDir: _, ...options } = engineOptions(mode, sink);
          const result = await host.run({ kind: 'drain', options, count });
          const statuses = await statusesOf(pool, ids);
          if (statuses.sent !== count) throw new Error(`${host.variant.name} ${mode} run: expected ${count} sent, got ${JSON.stringify(statuses)}`);
          record(rates, LABELS[mode], host.variant.name, result.perSecond);
          record(cpu, LABELS[mode], host.variant.name, result.cpuUsPerJob);
          console.log(
            `round ${round} ${host.variant.name.padEnd(10)} ${mode}: ${rate(result.perSecond)}/s (${count} in ${result.seconds.toFixed(2)} s, ${Math.round(result.cpuUsPerJob)} µs of CPU per delivery in the engine's process; ${result.detail})`,
          );
        }
      }
    }
    console.log(`\nbuilds compared, ${ROUNDS} interleaved rounds: deliveries/s, median (range), and the ratio to ${variants.list[0]?.name}:\n`);
    console.log(comparisonTable(rates, variants.list, rate));
    console.log(`\nCPU of the engine's process per delivery in µs, median (range), and the ratio to ${variants.list[0]?.name}:\n`);
    console.log(comparisonTable(cpu, variants.list, (value) => String(Math.round(value))));
    const exported = variants.exported();
    if (exported) console.log(`\n${exported}`);
  } finally {
    for (const host of hosts) await host.stop();
  }
}

await main();
