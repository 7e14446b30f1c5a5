// Benchmark of the SMTP edge (not a test): N concurrent sessions sending 2 KiB messages, one
// recipient each, live RCPT verification against 100,000 aliases, durable accept (synchronous
// commit). The reference in the same run: Postfix's smtp-sink, the SMTP exchange alone, driven by
// the same client. Uses the machine's local PostgreSQL (127.0.0.1:5432, trust, user postgres) with
// a throwaway database it creates and drops.
//
//   node bench/mta/run.ts            (BENCH_SESSIONS=20 BENCH_SECONDS=15 BENCH_ALIASES=100000)
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { EDGE_NODE_FLAGS } from '../../apps/mta/src/data/drained-memory.ts';
import { type LoadResult, percentile, runLoad } from './load-client.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sessions = Number(process.env.BENCH_SESSIONS ?? 20);
const seconds = Number(process.env.BENCH_SECONDS ?? 15);
const aliasCount = Number(process.env.BENCH_ALIASES ?? 100_000);
const adminDsn = process.env.BENCH_POSTGRES_ADMIN_DSN ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const smtpSink = process.env.BENCH_SMTP_SINK ?? '/usr/sbin/smtp-sink';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not open port ${port}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

function report(name: string, result: LoadResult): { rate: number } {
  const rate = result.accepted / result.seconds;
  console.log(
    `${name.padEnd(34)} ${rate.toFixed(0).padStart(6)} msg/s accepted  (${result.accepted} in ${result.seconds.toFixed(1)} s, ${result.refused} refused)  RCPT p50 ${percentile(result.rcptMs, 50).toFixed(2)} ms  p99 ${percentile(result.rcptMs, 99).toFixed(2)} ms`,
  );
  return { rate };
}

async function main(): Promise<void> {
  const database = `postern_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminDsn });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  const dsn = adminDsn.replace(/\/[^/]*$/, `/${database}`);
  const children: ChildProcess[] = [];
  try {
    await runMigrations({ dsn, logger: createLogger('bench', 'warn') });
    const db = new pg.Client({ connectionString: dsn });
    await db.connect();
    const t0 = performance.now();
    await db.query("INSERT INTO mail.domains (name) VALUES ('bench.test')");
    await db.query(
      `WITH a AS (INSERT INTO mail.aliases (domain_id, local_part, kind)
                  SELECT d.id, 'user' || lpad(i::text, 6, '0'), 'forward'
                    FROM mail.domains d, generate_series(0, $1 - 1) AS i WHERE d.name = 'bench.test'
                  RETURNING id, local_part)
       INSERT INTO mail.alias_targets (alias_id, address) SELECT id, local_part || '@inbox.test' FROM a`,
      [aliasCount],
    );
    await db.query('ANALYZE');
    const { rows } = await db.query('SELECT count(*)::int AS n FROM mail.aliases');
    console.log(`aliases in the table: ${rows[0].n} (loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const settings = await db.query("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')");
    console.log(`PostgreSQL: ${settings.rows.map((row) => `${row.name}=${row.setting}`).join(', ')} (durable accept: commit before 250)`);
    await db.end();
    const recipient = () => `user${String(Math.floor(Math.random() * aliasCount)).padStart(6, '0')}@bench.test`;
    console.log(`${sessions} sessions, 2 KiB messages, 1 recipient each, ${seconds} s per run, 2 cores shared by client, server and PostgreSQL\n`);

    // The reference first: the SMTP exchange alone, nothing stored.
    const sinkPort = await freePort();
    const sink = spawn(smtpSink, ['-u', 'nobody', `127.0.0.1:${sinkPort}`, '1024'], { stdio: 'ignore' });
    children.push(sink);
    await waitForPort(sinkPort, sink, 'smtp-sink');
    await runLoad({ port: sinkPort, sessions, seconds: 2, recipient });
    const sinkResult = report('smtp-sink (reference ceiling)', await runLoad({ port: sinkPort, sessions, seconds, recipient }));
    await stopChild(sink);

    const edgePort = await freePort();
    const httpPort = await freePort();
    const edgeFlags = process.env.BENCH_EDGE_NODE_FLAGS ? process.env.BENCH_EDGE_NODE_FLAGS.split(' ') : [];
    const edge = spawn(process.execPath, [...EDGE_NODE_FLAGS, ...edgeFlags, 'apps/mta/src/main.ts'], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH,
        MAIL_POSTGRES_PRIMARY_DSN: dsn,
        MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${edgePort}`,
        MAIL_MTA_HTTP_ADDR: `127.0.0.1:${httpPort}`,
        MAIL_MTA_HOSTNAME: 'mx.bench.test',
        MAIL_MTA_RATE_LIMIT_PER_MINUTE: '1000000',
        MAIL_POSTGRES_POOL_MAX: process.env.BENCH_POOL_MAX ?? '10',
        MAIL_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(edge);
    if (edge.stdout) createInterface({ input: edge.stdout }).on('line', (line) => console.log(`[edge] ${line}`));
    await waitForPort(edgePort, edge, 'the edge');
    await runLoad({ port: edgePort, sessions, seconds: 2, recipient });
    const edgeResult = report('postern edge (live RCPT, durable)', await runLoad({ port: edgePort, sessions, seconds, recipient }));
    const stored = new pg.Client({ connectionString: dsn });
    await stored.connect();
    const counts = await stored.query('SELECT (SELECT count(*) FROM mail.messages)::int AS messages, (SELECT count(*) FROM mail.deliveries)::int AS deliveries');
    await stored.end();
    await stopChild(edge);
    console.log(`\nstored: ${counts.rows[0].messages} messages, ${counts.rows[0].deliveries} deliveries (warm-up included)`);
    console.log(`ratio edge / smtp-sink: ${(edgeResult.rate / sinkResult.rate).toFixed(2)}`);
    console.log(`goal: >= 1000 msg/s with 20 sessions and RCPT p99 < 5 ms`);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
