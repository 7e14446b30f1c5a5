// A PostgreSQL of a test file's own, for fault injection: the test really stops the container
// (docker stop) and starts it again, while the code under test keeps one address through a TCP
// proxy (a restarted container gets a new mapped port). The shared container is never stopped.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLogger, runMigrations } from '@postern/shared';
import type { StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import { startPostgres } from './containers.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
import { waitFor } from './wait-for.ts';

const run = promisify(execFile);

export interface DedicatedPostgres {
  /** DSN through the proxy: stable across stop/start. */
  dsn: string;
  proxy: TcpProxy;
  container: StartedPostgreSqlContainer;
  /** docker stop: the server is really gone; open connections are cut. */
  stop(): Promise<void>;
  /** docker start, then wait until it answers again through the proxy. */
  start(): Promise<void>;
  close(): Promise<void>;
}

async function mappedPort(containerId: string): Promise<number> {
  const { stdout } = await run('docker', ['port', containerId, '5432/tcp']);
  const match = /:(\d+)\s*$/m.exec(stdout.trim().split('\n')[0] ?? '');
  if (!match) throw new Error(`cannot read mapped port of ${containerId}: ${stdout}`);
  return Number(match[1]);
}

export async function startDedicatedPostgres(): Promise<DedicatedPostgres> {
  const container = await startPostgres();
  const proxy = await startTcpProxy(container.getHost(), container.getPort());
  const dsn = `postgres://postern:postern@${proxy.host}:${proxy.port}/postern_admin`;
  await runMigrations({ dsn, logger: createLogger('e2e-dedicated-pg', 'warn') });
  const pg = (await import('pg')).default;
  const answers = async () => {
    const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } finally {
      await client.end().catch(() => {});
    }
  };
  return {
    dsn,
    proxy,
    container,
    async stop() {
      await run('docker', ['stop', '--time', '5', container.getId()]);
      proxy.cutConnections();
    },
    async start() {
      await run('docker', ['start', container.getId()]);
      proxy.retarget(container.getHost(), await mappedPort(container.getId()));
      await waitFor('restarted PostgreSQL to answer', answers, (ok) => ok, { timeoutMs: 60_000, intervalMs: 200 });
    },
    async close() {
      await proxy.close();
      await container.stop({ remove: true, removeVolumes: true });
    },
  };
}
