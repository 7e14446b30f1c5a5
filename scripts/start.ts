// `npm start`: Postern on one machine with no setup. Starts the embedded PostgreSQL (unless
// MAIL_POSTGRES_PRIMARY_DSN points elsewhere), applies the migrations, then runs every app that
// exists (apps/*/src/main.ts) as a child process, restarting one that dies (capped backoff).
// It says "Postern is running" once every app answers /readyz 200 (start/await-apps-ready.ts).
// Ctrl-C / SIGTERM: the apps stop first (each within MAIL_SHUTDOWN_TIMEOUT), then PostgreSQL.
// The launcher (scripts/launch.cjs) gone, even killed outright, is a SIGTERM too (its IPC channel
// closes), and each app and the database stop when this process is gone (theirs closes): no
// process of `npm start` outlives the one that started it.
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createLogger, explainStartupFailure, parseDuration, runMigrations, stdoutSink, withoutCredentials } from '@postern/shared';
import { loadOrCreateSecretsKey } from './embedded-postgres/secrets-key-file.ts';
import { awaitAppsReady } from './start/await-apps-ready.ts';

const root = path.resolve(import.meta.dirname, '..');
const log = createLogger('start', process.env.MAIL_LOG_LEVEL ?? 'info');
const shutdownParsed = parseDuration(process.env.MAIL_SHUTDOWN_TIMEOUT ?? '30s');
const shutdownTimeoutMs = shutdownParsed.ok ? shutdownParsed.value : 30_000;

interface Supervised {
  name: string;
  child: ChildProcess | null;
  restarts: number;
}

const apps: Supervised[] = [];
let database: ChildProcess | null = null;
let stopping = false;

/** A failure already said in words a person can act on: printed without a stack trace. */
class ExplainedError extends Error {}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function startEmbeddedPostgres(): Promise<{ dsn: string; dataRoot: string }> {
  // detached: its own process group, so a terminal's Ctrl-C reaches only this orchestrator.
  database = fork(path.join(root, 'scripts', 'embedded-postgres.ts'), [], { detached: true, stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    database?.once('message', (message: { type: string; dsn?: string; message?: string; databaseDir?: string; fresh?: boolean }) => {
      if (message.type === 'ready' && message.dsn) {
        log.info({ databaseDir: message.databaseDir, fresh: message.fresh }, 'embedded PostgreSQL started');
        resolve({ dsn: message.dsn, dataRoot: path.dirname(message.databaseDir ?? '') });
      } else reject(new ExplainedError(`embedded PostgreSQL failed: ${message.message ?? JSON.stringify(message)}`));
    });
    database?.once('exit', (code) => reject(new ExplainedError(`embedded PostgreSQL exited (code ${code}) before it was ready`)));
  });
}

function discoverApps(): string[] {
  const appsDir = path.join(root, 'apps');
  if (!existsSync(appsDir)) return [];
  return readdirSync(appsDir)
    .filter((name) => existsSync(path.join(appsDir, name, 'src', 'main.ts')))
    .sort();
}

function launch(app: Supervised, env: NodeJS.ProcessEnv): void {
  const child = fork(path.join(root, 'apps', app.name, 'src', 'main.ts'), [], { cwd: root, env, detached: true, stdio: 'inherit' });
  app.child = child;
  const startedAt = Date.now();
  child.on('exit', (code, signal) => {
    app.child = null;
    if (stopping) return;
    // A process that ran a while before dying starts again at once; one that dies at boot backs off.
    if (Date.now() - startedAt > 60_000) app.restarts = 0;
    const delayMs = Math.min(500 * 2 ** app.restarts, 30_000);
    app.restarts += 1;
    // The app a line is about is its `child`: `app` is this process's own name ("start").
    log.error({ child: app.name, code, signal, restartInMs: delayMs }, `${app.name} exited unexpectedly; restarting`);
    setTimeout(() => {
      if (!stopping) launch(app, env);
    }, delayMs);
  });
}

let stopRequestedAt = 0;

async function stopAll(reason: string, exitCode = 0): Promise<void> {
  if (stopping) {
    // One signal can arrive twice (a terminal's Ctrl-C reaches the group, a launcher forwards a
    // SIGTERM the group also got): only a second request a person makes, later, forces the exit.
    if (Date.now() - stopRequestedAt < 1_000) return;
    log.warn('second stop request: killing everything now');
    for (const app of apps) app.child?.kill('SIGKILL');
    database?.kill('SIGKILL');
    process.exit(1);
  }
  stopping = true;
  stopRequestedAt = Date.now();
  log.info({ reason }, 'stopping Postern');
  await Promise.all(
    apps.map(async (app) => {
      const child = app.child;
      if (!child) return;
      child.kill('SIGTERM');
      if (!(await waitForExit(child, shutdownTimeoutMs + 5_000))) {
        log.error({ child: app.name }, `${app.name} did not stop in time; killing it`);
        child.kill('SIGKILL');
      }
    }),
  );
  if (database) {
    database.kill('SIGTERM');
    if (!(await waitForExit(database, 30_000))) database.kill('SIGKILL');
    log.info('embedded PostgreSQL stopped');
  }
  log.info('Postern stopped');
  process.exit(exitCode);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stopAll('SIGINT'));
  process.on('SIGTERM', () => void stopAll('SIGTERM'));
  // Started by the launcher, which holds the other end of this channel: the kernel closes it when
  // the launcher dies however it dies, and nobody would stop this process after that.
  if (process.send) process.on('disconnect', () => void stopAll('the launcher is gone'));

  let dsn = process.env.MAIL_POSTGRES_PRIMARY_DSN;
  let secretsKey: string | undefined;
  if (dsn) log.info('using the PostgreSQL in MAIL_POSTGRES_PRIMARY_DSN');
  else {
    const embedded = await startEmbeddedPostgres();
    dsn = embedded.dsn;
    // Only beside the embedded database: a database of one's own may be shared with processes
    // that need the operator's own key, which Postern cannot guess.
    if (!process.env.MAIL_SECRETS_KEY) {
      const key = await loadOrCreateSecretsKey(embedded.dataRoot);
      secretsKey = key.value;
      log.info({ file: key.file, created: key.created }, 'MAIL_SECRETS_KEY read from the data folder (it seals DKIM private keys: back it up with the database)');
    }
  }
  if (stopping) return;

  await runMigrations({ dsn, logger: log });

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MAIL_POSTGRES_PRIMARY_DSN: dsn,
    MAIL_ENV: process.env.MAIL_ENV ?? 'development',
    // The API mints a fresh admin token for this development session and prints it with a curl
    // example, so a newcomer can try GraphQL at once (ignored outside MAIL_ENV=development).
    POSTERN_DEV_TOKEN: process.env.POSTERN_DEV_TOKEN ?? '1',
    ...(secretsKey ? { MAIL_SECRETS_KEY: secretsKey } : {}),
  };
  if (!env.MAIL_SMTP_MODE && !env.MAIL_SMTP_ADDR) {
    env.MAIL_SMTP_MODE = 'stub';
    log.info('MAIL_SMTP_MODE=stub: no relay configured (set MAIL_SMTP_ADDR to send for real)');
  }
  const names = discoverApps();
  if (names.length === 0) log.info('no apps yet: the database is up and migrated; Ctrl-C to stop');
  for (const name of names) {
    const app: Supervised = { name, child: null, restarts: 0 };
    apps.push(app);
    launch(app, env);
  }
  if (names.length > 0) log.info({ apps: names }, 'apps started; waiting for each to answer /readyz');
  const ready = await awaitAppsReady({
    apps: names,
    env,
    stopped: () => stopping,
    onSlow: (waiting, waitedMs) => {
      for (const { app, url, last } of waiting) {
        log.warn({ child: app, url, last }, `${app} has not answered ${url} with 200 in ${Math.round(waitedMs / 1_000)} s (last: ${last}); still waiting — its own lines above say why`);
      }
    },
  });
  if (!ready) return;
  log.info({ apps: names, postgres: withoutCredentials(dsn) }, 'Postern is running; Ctrl-C to stop');
  if (!process.env.MAIL_POSTGRES_PRIMARY_DSN) {
    // The operator CLI talks to the database directly; tell the newcomer which one.
    // Through the log sink, as every line: a write to a full pipe must not block this process.
    stdoutSink().write(`\nOperator CLI against this database:\n  MAIL_POSTGRES_PRIMARY_DSN=${dsn} npx postern token create --name me --scope admin\n\n`);
  }
}

main().catch(async (error: unknown) => {
  const explained = explainStartupFailure(error);
  if (error instanceof ExplainedError) log.fatal(`npm start failed: ${error.message}`);
  else if (explained) log.fatal(`npm start failed: ${explained.what}: ${explained.why}. ${explained.todo}`);
  else log.fatal({ err: error }, 'npm start failed');
  await stopAll('startup failed', 1);
});
