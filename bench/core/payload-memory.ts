// The engine's memory with many messages of MAIL_MTA_MAX_MESSAGE_SIZE (25 MiB) in flight: N relayed
// messages stored as the edge stores them (mail.messages, mail.message_payloads, one relay delivery
// per recipient), sent by the real engine process (`node apps/core/src/main.ts`) to a sink in this
// process that counts what it receives and keeps nothing. The engine can be given a memory limit as
// an operator gives one: a container's (a memory cgroup of its own, BENCH_MEMORY_LIMIT_MIB: the
// kernel kills it at the limit) or V8's (--max-old-space-size, BENCH_HEAP_MIB); an engine that dies
// is started again after a second, as a container's restart policy would, until every delivery has
// ended or the deadline passes. Prints each run's peak RSS (the kernel's VmHWM, read every 50 ms),
// how each run ended, the deliveries' end states and the sink's count (duplicates included).
//   node bench/core/payload-memory.ts
//     [BENCH_MESSAGES=40 BENCH_MIB=25 BENCH_RECIPIENTS=1 BENCH_K=8 BENCH_DATA_DELAY_MS=0
//      BENCH_MEMORY_LIMIT_MIB= BENCH_HEAP_MIB= BENCH_DEADLINE_S=300 BENCH_ENGINE_ENV=NAME=value,...
//      BENCH_ENGINE_ROOT=<another checkout, to measure its engine on the same run>]
// Uses the machine's local PostgreSQL like the other benches (bench/postgres/admin-dsn.ts), with a
// throwaway database. The memory limit needs a writable memory cgroup (cgroup v1 or v2, as root).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { ADMIN_DSN, databaseDsn } from '../postgres/admin-dsn.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const MiB = 1024 * 1024;
const MESSAGES = Number(env.BENCH_MESSAGES ?? 40);
const SIZE = Number(env.BENCH_MIB ?? 25) * MiB;
const RECIPIENTS = Number(env.BENCH_RECIPIENTS ?? 1);
const K = Number(env.BENCH_K ?? 8);
const DATA_DELAY_MS = Number(env.BENCH_DATA_DELAY_MS ?? 0);
const MEMORY_LIMIT_MIB = env.BENCH_MEMORY_LIMIT_MIB ? Number(env.BENCH_MEMORY_LIMIT_MIB) : null;
const HEAP_MIB = env.BENCH_HEAP_MIB ? Number(env.BENCH_HEAP_MIB) : null;
const DEADLINE_MS = Number(env.BENCH_DEADLINE_S ?? 300) * 1000;
const ENGINE_ROOT = env.BENCH_ENGINE_ROOT ?? root;
const ENGINE_ENV = Object.fromEntries((env.BENCH_ENGINE_ENV ?? '').split(',').filter(Boolean).map((pair) => pair.split('=') as [string, string]));
const FINAL = ['sent', 'failed', 'dead_letter', 'suppressed'];

/** A message of about `size` bytes: an attachment's base64 lines, which PostgreSQL cannot compress much. */
function messageOf(size: number, recipients: string[]): Buffer {
  const head = `Received: from client.outside.test by mx.postern.test with ESMTP; ${new Date().toUTCString()}\r\nFrom: <ann@outside.test>\r\nTo: ${recipients.map((r) => `<${r}>`).join(', ')}\r\nSubject: large\r\nMessage-ID: <${randomUUID()}@outside.test>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n`;
  const lines = randomBytes(Math.ceil(((size - head.length) * 3) / 4)).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(head + lines.slice(0, size - head.length));
}

interface Sink {
  port: number;
  accepted: Map<string, number>;
  bytes: number;
  close(): Promise<void>;
}

/** Counts each message by recipient, keeps none of its bytes; answers the data after DATA_DELAY_MS. */
async function startCountingSink(): Promise<Sink> {
  const accepted = new Map<string, number>();
  const sink = { port: 0, accepted, bytes: 0, close: async () => {} };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    logger: false,
    size: 64 * MiB,
    onData(stream, session, callback) {
      stream.on('data', (chunk: Buffer) => {
        sink.bytes += chunk.length;
      });
      stream.on('end', () => {
        setTimeout(() => {
          for (const to of session.envelope.rcptTo) accepted.set(to.address, (accepted.get(to.address) ?? 0) + 1);
          callback();
        }, DATA_DELAY_MS);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.port = (server.server.address() as { port: number }).port;
  sink.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return sink;
}

/** A memory cgroup limited to `mib` (v2 when mounted so, else v1), or null without a limit. */
function memoryCgroup(mib: number | null): { procs: string; remove(): void } | null {
  if (mib === null) return null;
  const name = `postern-bench-${randomBytes(4).toString('hex')}`;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const dir = v2 ? `/sys/fs/cgroup/${name}` : `/sys/fs/cgroup/memory/${name}`;
  mkdirSync(dir);
  writeFileSync(path.join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), String(mib * MiB));
  if (v2) writeFileSync(path.join(dir, 'memory.swap.max'), '0');
  return { procs: path.join(dir, 'cgroup.procs'), remove: () => rmdirSync(dir) };
}

function vmHwm(pid: number): number | null {
  try {
    const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib ? Number(kib) * 1024 : null;
  } catch {
    return null;
  }
}

interface Run {
  peak: number;
  ended: string | null;
}

function startEngine(dsn: string, sinkPort: number, cgroup: { procs: string } | null, run: Run): ChildProcess {
  const node = [...(HEAP_MIB ? [`--max-old-space-size=${HEAP_MIB}`] : []), 'apps/core/src/main.ts'];
  // The shell joins the cgroup before it becomes node, so nothing of the engine runs outside it.
  const [command, args] = cgroup
    ? ['sh', ['-c', `echo $$ > ${cgroup.procs} && exec "$0" "$@"`, process.execPath, ...node]]
    : [process.execPath, node];
  const child = spawn(command as string, args as string[], {
    cwd: ENGINE_ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      PATH: env.PATH,
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_SMTP_ADDR: `127.0.0.1:${sinkPort}`,
      MAIL_SMTP_FROM: 'postern@postern.test',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(K),
      MAIL_LOG_LEVEL: 'warn',
      // A dead run's leases are taken back and retried within a minute (the defaults: 6 min, then
      // 1 min, 5 min, ...), so that a crash loop shows within the bench's deadline.
      MAIL_SMTP_TIMEOUT: '10s',
      MAIL_SMTP_SEND_DEADLINE: '30s',
      MAIL_LEASE_DURATION: '40s',
      MAIL_RETRY_LADDER: '5s,5s,5s,5s,5s,5s,5s,5s',
      ...ENGINE_ENV,
    },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const timer = setInterval(() => {
    run.peak = Math.max(run.peak, vmHwm(child.pid as number) ?? 0);
  }, 50);
  child.on('exit', (code, signal) => {
    clearInterval(timer);
    const heap = /heap out of memory|Reached heap limit/.test(stderr) ? ' (JavaScript heap out of memory)' : '';
    run.ended = signal ? `killed by ${signal}${heap}` : `exit ${code}${heap}`;
  });
  return child;
}

async function main(): Promise<void> {
  const sink = await startCountingSink();
  const database = `postern_bench_payload_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DSN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  const dsn = databaseDsn(database);
  const pool = new pg.Pool({ connectionString: dsn, max: 4 });
  const cgroup = memoryCgroup(MEMORY_LIMIT_MIB);
  const runs: Run[] = [];
  let engine: ChildProcess | null = null;
  try {
    await runMigrations({ dsn, logger: createLogger('bench', 'warn') });
    await pool.query(`ALTER SYSTEM SET max_wal_size = '4GB'`).catch(() => {});
    // Stored before the engine starts, so that they wait for it together, as after an outage.
    const recipientsOf = (i: number) => Array.from({ length: RECIPIENTS }, (_, r) => `m${i}-r${r}@sink.test`);
    for (let i = 0; i < MESSAGES; i++) {
      const recipients = recipientsOf(i);
      const raw = messageOf(SIZE, recipients);
      await pool.query(
        `WITH m AS (INSERT INTO mail.messages (envelope_from, envelope_to, size_bytes) VALUES ('ann@outside.test', $1::text[], $2) RETURNING id),
              p AS (INSERT INTO mail.message_payloads (message_id, raw) SELECT id, $3 FROM m)
         INSERT INTO mail.deliveries (source, payload_mode, message_id, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
         SELECT 'smtp', 'relay', m.id, r, 'ann@outside.test', '<' || gen_random_uuid() || '@mx.postern.test>', 'queued', now() FROM m, unnest($1::text[]) AS r`,
        [recipients, raw.length, raw],
      );
    }
    const total = MESSAGES * RECIPIENTS;
    console.log(
      `# ${MESSAGES} messages of ${(SIZE / MiB).toFixed(0)} MiB × ${RECIPIENTS} recipients, K=${K}, data answered after ${DATA_DELAY_MS} ms, ` +
        `memory limit ${MEMORY_LIMIT_MIB ? `${MEMORY_LIMIT_MIB} MiB (cgroup)` : 'none'}, heap limit ${HEAP_MIB ? `${HEAP_MIB} MiB` : 'default'}` +
        `${Object.keys(ENGINE_ENV).length ? `, ${JSON.stringify(ENGINE_ENV)}` : ''}${ENGINE_ROOT === root ? '' : `, engine of ${ENGINE_ROOT}`}`,
    );
    const t0 = performance.now();
    let statuses: Record<string, number> = {};
    for (;;) {
      if (!engine || engine.exitCode !== null || engine.signalCode !== null) {
        if (engine) await new Promise((resolve) => setTimeout(resolve, 1000));
        const run: Run = { peak: 0, ended: null };
        runs.push(run);
        engine = startEngine(dsn, sink.port, cgroup, run);
      }
      const { rows } = await pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status');
      statuses = Object.fromEntries(rows.map((row) => [row.status, row.n]));
      const ended = FINAL.reduce((sum, status) => sum + (statuses[status] ?? 0), 0);
      if (ended === total || performance.now() - t0 > DEADLINE_MS) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const seconds = (performance.now() - t0) / 1000;
    engine?.kill('SIGTERM');
    await new Promise((resolve) => (engine && engine.exitCode === null && engine.signalCode === null ? engine.once('exit', resolve) : resolve(null)));
    const errors = await pool.query<{ error: string; n: number }>(
      `SELECT left(smtp_text, 120) AS error, count(*)::int AS n FROM mail.attempts WHERE status <> 'sent' GROUP BY 1 ORDER BY 2 DESC LIMIT 5`,
    );
    for (const row of errors.rows) console.log(`  ${row.n} attempts not sent: ${row.error}`);
    const received = [...sink.accepted.values()].reduce((sum, n) => sum + n, 0);
    const duplicates = [...sink.accepted.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
    const peak = Math.max(...runs.map((run) => run.peak));
    console.log(`runs ${runs.length}: ${runs.map((run, i) => `#${i + 1} peak ${(run.peak / MiB).toFixed(0)} MiB, ${run.ended ?? 'running'}`).join('; ')}`);
    console.log(
      `peak RSS ${(peak / MiB).toFixed(0)} MiB; ${seconds.toFixed(0)} s; deliveries ${JSON.stringify(statuses)} of ${total}; ` +
        `sink received ${received} (${sink.accepted.size} recipients, ${duplicates} duplicates, ${(sink.bytes / MiB).toFixed(0)} MiB)`,
    );
  } finally {
    if (engine && engine.exitCode === null && engine.signalCode === null) engine.kill('SIGKILL');
    await sink.close();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
    await admin.end();
    cgroup?.remove();
  }
}

await main();
