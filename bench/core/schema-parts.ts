// What each part of the queue's schema costs the engine's claim and outcome statements (not a test:
// it prints figures and asserts nothing). The "SQL alone" loop of run.ts — the engine's own claim
// and outcome statements, K clients, no engine around them — runs against the schema as migrated
// and against copies with parts removed, in interleaved rounds, beside graphile-worker's perfTest
// on the same server:
//
//   migrated          the schema as the migrations leave it
//   no-fk             without the foreign key from mail.attempts to mail.deliveries (checked per
//                     attempt row)
//   no-checks         without the CHECK constraints of mail.deliveries and mail.attempts
//                     (PostgreSQL reads each one back from its stored form and plans it once per
//                     statement, then evaluates it on every row written)
//   no-column-checks  without only those on one column (status, lengths, formats), keeping the
//                     ones that tie columns together (a waiting delivery is scheduled, ...)
//   column-domains    those one-column CHECKs as domains of their columns instead (the same rules)
//   stripped          without the foreign key and every CHECK, without the due trigger (NOTIFY)
//                     and without the five indexes neither statement uses (the API's listings,
//                     retention): the delivery row, its two updates and the attempt row alone
//
// None of these is a configuration Postern offers: the figures say how far removing a part would
// move the two statements, so a schema change can be weighed before it is made (docs/performance.md,
// "What the schema's parts cost"). BENCH_BATCH gives the rows per claim, one or more separated by
// commas: 32 is the engine's batch with a full queue, 1 the claims of paced arrival, where the
// per-statement costs (the constraints read back, the commit, the round trip) are paid per delivery.
//
//   flock /tmp/postern-bench.lock node bench/core/schema-parts.ts
//   BENCH_ROUNDS=3 BENCH_N=20000 BENCH_ROWS=100000 BENCH_BATCH=32,1 BENCH_VARIANTS=<all of the above>
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { ADMIN_DSN, databaseDsn } from '../postgres/admin-dsn.ts';
import { type AutoAnalyze, startAutoAnalyze } from '../postgres/auto-analyze.ts';
import { enqueueDeliveries, fillHistory } from './deliveries.ts';
import { loadEngineTree, sqlAloneLoop } from './engine-adapter.ts';
import { rate, spreadOf } from './figures.ts';
import { GRAPHILE_WORKER_VERSION, loadGraphileWorker, runGraphilePerfTest } from './graphile-worker.ts';

const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const N = Number(env.BENCH_N ?? 20_000);
const ROWS = Number(env.BENCH_ROWS ?? 100_000);
const K = 32;
const BATCHES = (env.BENCH_BATCH ?? '32,1').split(',').map(Number);
if (BATCHES.some((batch) => !Number.isInteger(batch) || batch < 1)) throw new Error(`BENCH_BATCH=${env.BENCH_BATCH}: expected rows per claim, whole numbers separated by commas`);

/** Statements that take a part away from a freshly migrated database. */
const DROP_FOREIGN_KEY = ['ALTER TABLE mail.attempts DROP CONSTRAINT attempts_delivery_id_fkey'];
/** Drops the CHECK constraints of mail.deliveries and mail.attempts; `columns`: only those on one column. */
const dropChecks = (columns: 'all' | 'one') => [
  `DO $$
   DECLARE c record;
   BEGIN
     FOR c IN SELECT conname, conrelid::regclass AS tab FROM pg_constraint
               WHERE contype = 'c' AND conrelid IN ('mail.deliveries'::regclass, 'mail.attempts'::regclass)
                 AND (${columns === 'all' ? 'true' : 'cardinality(conkey) = 1'}) LOOP
       EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
     END LOOP;
   END $$`,
];
const DROP_CHECKS = dropChecks('all');
/** The one-column CHECKs as domains, with the migrations' rules: PostgreSQL keeps a domain's planned
 *  constraint in its type cache and checks it where a value is assigned to the column, instead of
 *  reading every table CHECK back per statement and evaluating it on every row written. */
const COLUMN_DOMAINS: readonly [table: string, column: string, type: string, check: string][] = [
  ['deliveries', 'attempt_count', 'integer', 'VALUE >= 0'],
  ['deliveries', 'envelope_from', 'text', 'length(VALUE) <= 320'],
  ['deliveries', 'idempotency_key', 'text', 'length(VALUE) BETWEEN 1 AND 200'],
  ['deliveries', 'payload_mode', 'text', "VALUE IN ('relay', 'template', 'rendered')"],
  ['deliveries', 'recipient', 'text', "VALUE = lower(VALUE) AND VALUE ~ '^[^@\\s]+@[^@\\s]+$' AND length(VALUE) <= 320"],
  ['deliveries', 'source', 'text', 'length(VALUE) BETWEEN 1 AND 200'],
  ['deliveries', 'status', 'text', "VALUE IN ('queued', 'retrying', 'sending', 'sent', 'failed', 'dead_letter', 'suppressed', 'cancelled')"],
  ['deliveries', 'traceparent', 'text', "VALUE ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'"],
  ['attempts', 'attempt_number', 'integer', 'VALUE >= 1'],
  ['attempts', 'duration_ms', 'integer', 'VALUE >= 0'],
  ['attempts', 'enhanced_code', 'text', "VALUE ~ '^[245]\\.[0-9]{1,3}\\.[0-9]{1,3}$'"],
  ['attempts', 'smtp_code', 'integer', 'VALUE BETWEEN 200 AND 599'],
  ['attempts', 'status', 'text', "VALUE IN ('sent', 'transport_failed', 'timed_out', 'provider_rejected', 'outcome_unknown')"],
];
const AS_DOMAINS = [
  // A one-column CHECK added by a later migration would otherwise be dropped here without its domain.
  `DO $$
   BEGIN
     IF (SELECT array_agg(c.conrelid::regclass::text || '.' || a.attname ORDER BY c.conrelid::regclass::text || '.' || a.attname COLLATE "C")
           FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          WHERE c.contype = 'c' AND c.conrelid IN ('mail.deliveries'::regclass, 'mail.attempts'::regclass) AND cardinality(c.conkey) = 1)
        IS DISTINCT FROM ARRAY[${COLUMN_DOMAINS.map(([table, column]) => `'mail.${table}.${column}'`)
          .sort()
          .join(', ')}]::text[] THEN
       RAISE EXCEPTION 'the one-column CHECKs of mail.deliveries and mail.attempts are not those of COLUMN_DOMAINS (bench/core/schema-parts.ts)';
     END IF;
   END $$`,
  ...dropChecks('one'),
  ...COLUMN_DOMAINS.map(([table, column, type, check]) => `CREATE DOMAIN mail.${table}_${column} AS ${type} CHECK (${check})`),
  // The due trigger's condition reads status: dropped for the change and made again as the
  // migrations left it (its stored definition, so a later migration's change is kept).
  `DO $$
   DECLARE
     due_trigger text := (SELECT pg_get_triggerdef(oid) FROM pg_trigger
                           WHERE tgrelid = 'mail.deliveries'::regclass AND tgname = 'deliveries_notify_due');
   BEGIN
     DROP TRIGGER deliveries_notify_due ON mail.deliveries;
     ${COLUMN_DOMAINS.map(([table, column]) => `ALTER TABLE mail.${table} ALTER COLUMN ${column} TYPE mail.${table}_${column};`).join('\n     ')}
     EXECUTE due_trigger;
   END $$`,
];
const VARIANTS: Record<string, readonly string[]> = {
  migrated: [],
  'no-fk': DROP_FOREIGN_KEY,
  'no-checks': DROP_CHECKS,
  'no-column-checks': dropChecks('one'),
  'column-domains': AS_DOMAINS,
  stripped: [
    ...DROP_FOREIGN_KEY,
    ...DROP_CHECKS,
    'DROP TRIGGER deliveries_notify_due ON mail.deliveries',
    'DROP INDEX mail.deliveries_recipient_idx',
    'DROP INDEX mail.deliveries_created_at_idx',
    'DROP INDEX mail.deliveries_status_created_at_idx',
    'DROP INDEX mail.deliveries_message_id_idx',
    'DROP INDEX mail.attempts_finished_at_idx',
  ],
};
const CHOSEN = (env.BENCH_VARIANTS ?? Object.keys(VARIANTS).join(',')).split(',');
{
  const unknown = CHOSEN.filter((name) => !(name in VARIANTS));
  if (unknown.length > 0) throw new Error(`unknown BENCH_VARIANTS: ${unknown.join(', ')} (known: ${Object.keys(VARIANTS).join(', ')})`);
}

const root = path.resolve(import.meta.dirname, '../..');
const tag = randomUUID().slice(0, 8);

async function withPool<T>(dsn: string, max: number, use: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: dsn, max });
  pool.on('error', () => {});
  try {
    return await use(pool);
  } finally {
    await pool.end();
  }
}

async function main(): Promise<void> {
  console.log(`# schema parts — ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), load average ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}`);
  console.log(`# rounds=${ROUNDS} N=${N} K=${K} rows per claim=${BATCHES.join(',')} history rows=${ROWS} variants=${CHOSEN.join(',')}`);
  const worker = loadGraphileWorker();
  const tree = await loadEngineTree(root);
  const adminClient = new pg.Client({ connectionString: ADMIN_DSN });
  await adminClient.connect();
  const databases = [...CHOSEN.map((name) => `postern_parts_${tag}_${name.replaceAll('-', '_')}`), `postern_parts_${tag}_gw`];
  // Each variant's database by name; a run opens its K connections and closes them after, so the
  // variants never hold more than one run's connections at once (max_connections).
  const dsns = new Map<string, string>();
  const analyzers: AutoAnalyze[] = [];
  try {
    for (const db of databases) await adminClient.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}`);
    const graphileDsn = databaseDsn(databases.at(-1) as string);
    for (const [index, name] of CHOSEN.entries()) {
      const dsn = databaseDsn(databases[index] as string);
      await runMigrations({ dsn, logger: createLogger('bench', 'warn') });
      await withPool(dsn, 2, async (pool) => {
        for (const statement of VARIANTS[name] ?? []) await pool.query(statement);
        await fillHistory(pool, ROWS);
      });
      analyzers.push(await startAutoAnalyze(dsn));
      dsns.set(name, dsn);
    }
    analyzers.push(await startAutoAnalyze(graphileDsn));

    const rates = new Map<string, number[]>();
    const record = (key: string, perSecond: number) => rates.set(key, [...(rates.get(key) ?? []), perSecond]);
    for (let round = 1; round <= ROUNDS; round += 1) {
      const graphile = await runGraphilePerfTest(worker, graphileDsn, N, K);
      record('graphile', graphile.perSecond);
      console.log(`round ${round} graphile-worker ${GRAPHILE_WORKER_VERSION} perfTest: ${rate(graphile.perSecond)}/s`);
      for (const batch of BATCHES) {
        for (const name of CHOSEN) {
          const { finished, perSecond } = await withPool(dsns.get(name) as string, K, async (pool) => {
            await pool.query('VACUUM ANALYZE mail.deliveries');
            await pool.query('VACUUM ANALYZE mail.attempts');
            await enqueueDeliveries(pool, N, `parts-${round}-${batch}`);
            await pool.query('ANALYZE mail.deliveries');
            const t0 = performance.now();
            const finished = await sqlAloneLoop(tree, pool, K, batch);
            return { finished, perSecond: finished / ((performance.now() - t0) / 1000) };
          });
          if (finished !== N) throw new Error(`${name}: ${finished} of ${N} deliveries finished`);
          record(`${name}@${batch}`, perSecond);
          console.log(`round ${round} ${name}, ${batch} per claim: ${rate(perSecond)}/s`);
        }
      }
    }

    const median = (key: string) => spreadOf(rates.get(key) ?? []).median;
    const graphile = spreadOf(rates.get('graphile') ?? []);
    console.log(`\ngraphile-worker ${GRAPHILE_WORKER_VERSION} perfTest, K=${K}: ${rate(graphile.median)}/s (${rate(graphile.min)}–${rate(graphile.max)})\n`);
    console.log('| schema | rows per claim | median /s | range /s | ratio to migrated | ratio to graphile-worker |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const batch of BATCHES) {
      for (const name of CHOSEN) {
        const spread = spreadOf(rates.get(`${name}@${batch}`) ?? []);
        const base = median(`migrated@${batch}`);
        const toMigrated = Number.isNaN(base) ? '—' : `${(spread.median / base).toFixed(2)}×`;
        console.log(`| ${name} | ${batch} | ${rate(spread.median)} | ${rate(spread.min)}–${rate(spread.max)} | ${toMigrated} | ${(spread.median / graphile.median).toFixed(2)}× |`);
      }
    }
    console.log(`\n# after: load average ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}`);
  } finally {
    for (const analyzer of analyzers) await analyzer.stop();
    for (const db of databases) await adminClient.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(db)} WITH (FORCE)`);
    await adminClient.end();
  }
}

await main();
