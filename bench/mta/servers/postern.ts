// Postern's edge in the benchmark: a main.ts process, exactly as deployed, on a throwaway database
// of the machine's PostgreSQL (BENCH_POSTGRES_ADMIN_DSN, default the local server as user postgres)
// holding the benchmark's aliases. Live RCPT lookups, 250 only after the commit (whatever fsync
// and synchronous_commit that server has: printed). MAIL_* variables in the bench's environment
// reach the edge (e.g. MAIL_POSTGRES_POOL_MAX, MAIL_MTA_GREETING_DELAY); MAIL_MTA_PROCESSES is the
// edge's default (1) unless set there (`auto`: one worker per core; printed: on 2 shared cores it
// measured slower wherever a message is stored, docs/performance.md), and the CPU per message is
// the primary's and its workers' together (servers/server.ts); BENCH_EDGE_NODE_FLAGS
// are node flags for it (e.g. --cpu-prof, docs/performance.md). Another build (a baseline, or this
// one with tracing on: bench/compare/) is started the same way from its own tree, on a database of
// its own that its own migrations create (the edge migrates at start; the aliases are loaded once
// it listens).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ADMIN_DSN, databaseDsn } from '../../postgres/admin-dsn.ts';
import { type AutoAnalyze, startAutoAnalyze } from '../../postgres/auto-analyze.ts';
import { ALIAS_COUNT, ALIAS_DOMAIN } from '../aliases.ts';
import { type BenchServer, fileSystemOf, freePort, stopChild, waitForPort, waitForReady } from './server.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

async function createDatabase(): Promise<{ dsn: string; drop(): Promise<void> }> {
  const database = `postern_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DSN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  const drop = async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
    await admin.end();
  };
  return { dsn: databaseDsn(database), drop };
}

async function loadAliases(dsn: string, name: string): Promise<void> {
  const db = new pg.Client({ connectionString: dsn });
  await db.connect();
  try {
    await db.query('INSERT INTO mail.domains (name) VALUES ($1)', [ALIAS_DOMAIN]);
    await db.query(
      `WITH a AS (INSERT INTO mail.aliases (domain_id, local_part, kind)
                  SELECT d.id, i::text || 'user', 'forward'
                    FROM mail.domains d, generate_series(1, $1) AS i WHERE d.name = $2
                  RETURNING id, local_part)
       INSERT INTO mail.alias_targets (alias_id, address) SELECT id, local_part || '@inbox.test' FROM a`,
      [ALIAS_COUNT, ALIAS_DOMAIN],
    );
    await db.query('ANALYZE');
    const settings = await db.query("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit') ORDER BY name");
    const version = await db.query<{ server_version: string }>('SHOW server_version');
    // Readable only by a superuser; the file system only if the server is on this machine.
    const dataDirectory = await db.query<{ data_directory: string }>('SHOW data_directory').catch(() => null);
    const directory = dataDirectory?.rows[0]?.data_directory;
    console.log(
      `${name}: PostgreSQL ${version.rows[0]?.server_version} ${settings.rows.map((row) => `${row.name}=${row.setting}`).join(' ')}${directory ? ` (data on ${fileSystemOf(directory)})` : ''}, ${ALIAS_COUNT} aliases`,
    );
  } finally {
    await db.end();
  }
}

export interface PosternBuild {
  /** Column name in the tables. */
  name: string;
  /** The repository root of the build to run. */
  root: string;
  /** Added to the edge's environment (e.g. OTEL_* for tracing). */
  env: Record<string, string>;
}

export async function startPostern(build: PosternBuild = { name: 'postern', root: repoRoot, env: {} }): Promise<BenchServer> {
  const database = await createDatabase();
  let edge: ChildProcess | undefined;
  let analyze: AutoAnalyze | undefined;
  try {
    const port = await freePort();
    const httpPort = await freePort();
    const passed = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('MAIL_')));
    const processes = process.env.MAIL_MTA_PROCESSES ?? '1';
    console.log(
      `${build.name}: MAIL_MTA_PROCESSES=${processes} (${process.env.MAIL_MTA_PROCESSES ? 'from the environment' : "the edge's default"}; a build before it runs one process)`,
    );
    const flags = process.env.BENCH_EDGE_NODE_FLAGS ? process.env.BENCH_EDGE_NODE_FLAGS.split(' ') : [];
    edge = spawn(process.execPath, [...flags, 'apps/mta/src/main.ts'], {
      cwd: build.root,
      env: {
        PATH: process.env.PATH,
        ...build.env,
        MAIL_MTA_HOSTNAME: 'mx.bench.test',
        // The load comes from one address: the per-client message limit would measure itself.
        MAIL_MTA_RATE_LIMIT_PER_MINUTE: '1000000',
        MAIL_LOG_LEVEL: 'warn',
        // Like for like: Postfix and Haraka as configured here check no SPF, DKIM or DMARC either
        // (docs/performance.md). MAIL_INBOUND_AUTH_POLICY=annotate in the environment measures it.
        MAIL_INBOUND_AUTH_POLICY: 'off',
        MAIL_MTA_PROCESSES: processes,
        ...passed,
        MAIL_POSTGRES_PRIMARY_DSN: database.dsn,
        MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${port}`,
        MAIL_MTA_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const child = edge;
    if (child.stdout) createInterface({ input: child.stdout }).on('line', (line) => console.log(`[${build.name}] ${line}`));
    await waitForPort(port, build.name, () => child.exitCode === null);
    // With workers, the port opens with the first of them: ready is when all of them listen.
    await waitForReady(httpPort, build.name, () => child.exitCode === null);
    await loadAliases(database.dsn, build.name);
    analyze = await startAutoAnalyze(database.dsn);
    const analyzer = analyze;
    if (!analyzer.autovacuum) {
      console.log(`${build.name}: the server's autovacuum is off: the bench analyzes the tables it fills as autovacuum would (bench/postgres/auto-analyze.ts)`);
    }
    const counter = new pg.Pool({ connectionString: database.dsn, max: 1 });
    // The DROP DATABASE at the end terminates its idle connection; a real problem fails the query.
    counter.on('error', () => {});
    return {
      name: build.name,
      port,
      refusal: { port, code: 550 },
      ...(child.pid === undefined ? {} : { pid: child.pid }),
      async stored() {
        const { rows } = await counter.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.messages');
        const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
        const sample = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
        return {
          stored: rows[0]?.n ?? 0,
          duplicates: sample('mail_mta_duplicate_accepts_total'),
          acceptBatchMean: sample('mail_mta_accept_batch_messages_sum') / sample('mail_mta_accept_batch_messages_count'),
        };
      },
      async stop() {
        await stopChild(child);
        await analyzer.stop();
        await counter.end();
        await database.drop();
      },
    };
  } catch (error) {
    if (edge) await stopChild(edge);
    await analyze?.stop();
    await database.drop();
    throw error;
  }
}
