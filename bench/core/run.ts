// Delivery engine benchmark (not a test: it prints figures, asserts nothing).
//   node bench/core/run.ts            [BENCH_ROWS=1000000 BENCH_N=20000 BENCH_SMTP_N=10000 BENCH_K=32 BENCH_BATCH=32 BENCH_AHEAD=]
// Uses the machine's local PostgreSQL (127.0.0.1:5432, user postgres, trust auth) with a throwaway
// database it creates and drops, and Postfix's smtp-sink (/usr/sbin/smtp-sink) as the relay.
//  1. fills mail.deliveries with BENCH_ROWS finished rows, so the claim runs against a big table;
//  2. reference: the engine's own claim and completion statements in a minimal SQL loop, K clients,
//     no SMTP, no engine — what PostgreSQL alone allows: once with one completion transaction per
//     delivery (how the engine worked before batched completion), once with one per claimed batch;
//  3. the engine in stub mode (MAIL_SMTP_MODE=stub), K workers, end to end;
//  4. the engine in smtp mode against smtp-sink, K workers, end to end.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { claimDueDeliveries, createLogger, loadConfig, loadTemplateCatalog, type Outcome, recordOutcomes, runMigrations } from '@postern/shared';
import pg from 'pg';
import { startEngine } from '../../apps/core/src/engine.ts';
import { EngineEvents } from '../../apps/core/src/engine-events.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const N = Number(process.env.BENCH_N ?? 20_000);
const SMTP_N = Number(process.env.BENCH_SMTP_N ?? 10_000);
const K = Number(process.env.BENCH_K ?? 32);
const BATCH = Number(process.env.BENCH_BATCH ?? 32);
/** MAIL_CLAIM_AHEAD for the engine runs; unset: the engine's default. */
const AHEAD = process.env.BENCH_AHEAD;
const admin = 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `postern_bench_${randomUUID().slice(0, 8)}`;
const dsn = `postgres://postgres@127.0.0.1:5432/${dbName}`;
const log = createLogger('bench', 'warn');

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function queue(pool: pg.Pool, count: number, label: string): Promise<void> {
  await pool.query(
    `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
     SELECT 'bench', 'rendered', 'Bench ' || g, 'Hello number ' || g, $2 || g || '@sink.test', 'bench@postern.test',
            '<' || gen_random_uuid() || '@postern.test>', 'queued', now()
       FROM generate_series(1, $1) AS g`,
    [count, `${label}-`],
  );
}

async function waitAllFinished(pool: pg.Pool): Promise<void> {
  for (;;) {
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE status IN ('queued','retrying','sending')");
    if (rows[0]?.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function sentOutcome(delivery: { id: string; attempt_count: number }): Outcome {
  const now = new Date();
  return {
    deliveryId: delivery.id,
    attemptNumber: delivery.attempt_count,
    status: 'sent',
    waitMs: 0,
    lastError: null,
    attempt: { status: 'sent', smtpCode: 250, enhancedCode: '2.0.0', smtpText: 'ok', startedAt: now, finishedAt: now, durationMs: 0 },
  };
}

async function referenceLoop(pool: pg.Pool, batched: boolean): Promise<{ perSecond: number; p50: number; p99: number }> {
  await queue(pool, N, batched ? 'refb' : 'ref');
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: K }, async (_, index) => {
      const me = `bench-ref-${index}`;
      for (;;) {
        const c0 = performance.now();
        const claimed = await claimDueDeliveries(pool, me, BATCH, 60_000);
        latencies.push(performance.now() - c0);
        if (claimed.length === 0) return;
        if (batched) await recordOutcomes(pool, me, claimed.map(sentOutcome));
        else for (const delivery of claimed) await recordOutcomes(pool, me, [sentOutcome(delivery)]);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { perSecond: N / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** True percentiles of the claim statement's duration, recorded per claim call (not histogram bounds). */
function claimFigures(durations: number[], claimedCounts: number[]): { p50: string; p99: string; max: string; claims: number; perClaim: string } {
  const sorted = [...durations].sort((a, b) => a - b);
  const claimed = claimedCounts.reduce((a, b) => a + b, 0);
  return {
    p50: percentile(sorted, 50).toFixed(2),
    p99: percentile(sorted, 99).toFixed(2),
    max: (sorted.at(-1) ?? Number.NaN).toFixed(2),
    claims: sorted.length,
    perClaim: (claimed / Math.max(1, claimedCounts.filter((n) => n > 0).length)).toFixed(1),
  };
}

async function engineRun(pool: pg.Pool, mode: 'stub' | 'smtp', count: number, smtpAddr: string | null) {
  await queue(pool, count, mode);
  const config = loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_POSTGRES_POOL_MAX: String(K + 6),
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: path.join(root, 'templates'),
      MAIL_SMTP_MODE: mode,
      ...(smtpAddr ? { MAIL_SMTP_ADDR: smtpAddr } : {}),
      MAIL_SMTP_FROM: 'bench@postern.test',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(K),
      MAIL_CLAIM_BATCH_SIZE: String(BATCH),
      ...(AHEAD !== undefined ? { MAIL_CLAIM_AHEAD: AHEAD } : {}),
      MAIL_LOG_LEVEL: 'error',
    },
    'core',
  );
  const durations: number[] = [];
  const claimedCounts: number[] = [];
  const batchSizes: number[] = [];
  // Subscribed before the engine starts, so the first claims are timed too.
  const events = new EngineEvents(log);
  events.on('claim', ({ durationMs, claimed }) => {
    durations.push(durationMs);
    claimedCounts.push(claimed);
  });
  events.on('completion:batch', (batch) => batchSizes.push(batch.size));
  const t0 = performance.now();
  const engine = await startEngine(config, {
    logger: log,
    catalog: loadTemplateCatalog(config.templateDir),
    http: false,
    events,
  });
  await waitAllFinished(pool);
  const seconds = (performance.now() - t0) / 1000;
  const claims = claimFigures(durations, claimedCounts);
  const meanBatch = (batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length)).toFixed(1);
  await engine.stop();
  const { rows } = await pool.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM mail.deliveries WHERE source = 'bench' AND subject LIKE 'Bench %' AND recipient LIKE $1 GROUP BY status",
    [`${mode}-%`],
  );
  return { perSecond: count / seconds, seconds, claims, meanBatch, commits: batchSizes.length, statuses: rows };
}

function startSmtpSink(port: number): ChildProcess {
  // -c: count, -u: run as this user when started as root; backlog 1024.
  const args = [...(process.getuid?.() === 0 ? ['-u', 'postgres'] : []), `127.0.0.1:${port}`, '1024'];
  return spawn('/usr/sbin/smtp-sink', args, { stdio: 'ignore' });
}

async function main(): Promise<void> {
  const load = os.loadavg().map((n) => n.toFixed(2)).join(' ');
  console.log(`# postern core bench — ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), load average before: ${load}`);
  console.log(`# rows=${ROWS} N(stub, reference)=${N} N(smtp)=${SMTP_N} K=${K} batch=${BATCH} claim-ahead=${AHEAD ?? 'default'}`);
  const adminClient = new pg.Client({ connectionString: admin });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${pg.escapeIdentifier(dbName)}`);
  const sink = startSmtpSink(2626);
  const pool = new pg.Pool({ connectionString: dsn, max: K + 4 });
  pool.on('error', () => {});
  try {
    await runMigrations({ dsn, logger: log });
    let t = performance.now();
    await pool.query(
      `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id,
                                    status, attempt_count, finished_at, created_at)
       SELECT 'history', 'rendered', 's', 't', 'old' || g || '@sink.test', 'bench@postern.test',
              '<old-' || g || '@postern.test>', 'sent', 1, now() - interval '1 day', now() - interval '1 day'
         FROM generate_series(1, $1) AS g`,
      [ROWS],
    );
    await pool.query('VACUUM ANALYZE mail.deliveries');
    console.log(`filled ${ROWS} finished deliveries in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const perRow = await referenceLoop(pool, false);
    console.log(`reference SQL loop (claim + one completion commit per delivery, no SMTP, K=${K}): ${perRow.perSecond.toFixed(0)} deliveries/s; claim p50 ${perRow.p50.toFixed(2)} ms, p99 ${perRow.p99.toFixed(2)} ms`);
    await pool.query('VACUUM ANALYZE mail.deliveries');
    const reference = await referenceLoop(pool, true);
    console.log(`reference SQL loop (claim + one completion commit per claimed batch, no SMTP, K=${K}): ${reference.perSecond.toFixed(0)} deliveries/s; claim p50 ${reference.p50.toFixed(2)} ms, p99 ${reference.p99.toFixed(2)} ms`);

    await pool.query('VACUUM ANALYZE mail.deliveries');
    const stub = await engineRun(pool, 'stub', N, null);
    console.log(`engine, stub mode (K=${K}): ${stub.perSecond.toFixed(0)} deliveries/s end to end (${N} in ${stub.seconds.toFixed(1)} s); claim p50 ${stub.claims.p50} ms, p99 ${stub.claims.p99} ms, max ${stub.claims.max} ms over ${stub.claims.claims} claims (${stub.claims.perClaim} per non-empty claim); ${stub.commits} completion commits, mean batch ${stub.meanBatch}; ratio to reference ${(stub.perSecond / reference.perSecond).toFixed(2)}`);

    await pool.query('VACUUM ANALYZE mail.deliveries');
    t = performance.now();
    const smtp = await engineRun(pool, 'smtp', SMTP_N, '127.0.0.1:2626');
    console.log(`engine, smtp mode to smtp-sink (K=${K}): ${smtp.perSecond.toFixed(0)} deliveries/s end to end (${SMTP_N} in ${smtp.seconds.toFixed(1)} s); claim p50 ${smtp.claims.p50} ms, p99 ${smtp.claims.p99} ms, max ${smtp.claims.max} ms over ${smtp.claims.claims} claims (${smtp.claims.perClaim} per non-empty claim); ${smtp.commits} completion commits, mean batch ${smtp.meanBatch}; ratio to reference ${(smtp.perSecond / reference.perSecond).toFixed(2)}; statuses ${JSON.stringify(smtp.statuses)}`);
    console.log(`# load average after: ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}`);
  } finally {
    await pool.end();
    sink.kill('SIGTERM');
    await adminClient.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbName)} WITH (FORCE)`);
    await adminClient.end();
  }
}

await main();
