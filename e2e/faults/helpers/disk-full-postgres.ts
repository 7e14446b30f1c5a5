// A PostgreSQL whose disks can really fill up: its data directory and its WAL (initdb --waldir) on
// two small tmpfs mounts of their own, so a test fills one from inside the container (a filler
// file, as a log or a dump growing beside the database does) and frees it again. A full data
// mount makes every write that needs a new page fail with `ERROR 53100 could not extend file ...:
// No space left on device` while reads and writes that fit in place go on; a full WAL mount makes
// the next WAL segment impossible to create: the server PANICs, and its crash recovery PANICs again
// while there is no room (the end-of-recovery checkpoint needs the segment too). The postmaster
// then exits; the container's command starts it again every second, as a service manager would, so
// the server is back by itself once the space is freed, and the tmpfs mounts (gone with the
// container) outlive every crash. The code under test reaches it through a TCP proxy, like
// dedicated-postgres.ts.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLogger, runMigrations } from '@postern/shared';
import pg from 'pg';
import { GenericContainer, type StartedTestContainer, Wait } from 'testcontainers';
import { labels } from '../../harness/containers.ts';
import { images } from '../../harness/images.ts';
import { startTcpProxy, type TcpProxy, waitFor } from '../../harness/index.ts';

const run = promisify(execFile);

const USER = 'postern';
const PASSWORD = 'postern';
const DATABASE = 'postern_admin';

/** The two mounts; the server's files are in a directory under each, the filler beside it. */
export const MOUNTS = { data: '/pgdisk/data', wal: '/pgdisk/wal' } as const;
export type Disk = keyof typeof MOUNTS;

// Large enough for initdb, the migrations and a cell's traffic; small enough to fill in a moment.
const MOUNT_SIZE = { data: '192m', wal: '96m' } as const;

// Old WAL segments are removed, not recycled, and few are kept: the next segment after a switch is
// always a new file, which is what a full WAL disk cannot give. fsync off as in containers.ts (the
// server crashes, never the machine: what was written is in the tmpfs), but synchronous_commit on:
// with it off a commit is answered before its WAL is written, and the PANIC loses it (seen: a
// message answered 250 and a command acknowledged, both gone after the WAL-full cell's crash).
const SERVER_ARGS = [
  '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200',
  '-c', 'wal_recycle=off', '-c', 'min_wal_size=32MB', '-c', 'max_wal_size=64MB',
];

// The image's entrypoint does initdb on the first start and runs the server; when the server exits
// (a PANIC whose recovery failed too), it is started again after a second, in the same container.
const SUPERVISOR = [
  `chown postgres:postgres ${MOUNTS.wal}`,
  'while :; do',
  `  /usr/local/bin/docker-entrypoint.sh postgres ${SERVER_ARGS.join(' ')}`,
  '  echo "supervisor: postgres exited with status $?; starting it again in 1 s"',
  '  sleep 1',
  'done',
].join('\n');

export interface DiskFullPostgres {
  /** DSN through the proxy. */
  dsn: string;
  proxy: TcpProxy;
  container: StartedTestContainer;
  /** Fills the mount to the last byte; resolves with the bytes the filler took. */
  fill(disk: Disk): Promise<number>;
  /**
   * With the WAL mount full: switches to the next WAL segment, writing a record into each, until
   * the server has to create one and cannot (it PANICs; the connection breaks). A segment the
   * checkpointer created ahead is used up on the way. Resolves when the server stops answering.
   */
  exhaustWal(): Promise<void>;
  /** Removes the filler; the space is back at once. */
  free(disk: Disk): Promise<void>;
  /** Bytes free on the mount now. */
  available(disk: Disk): Promise<number>;
  /** The server's log lines so far (the container's output), for what PostgreSQL said. */
  logs(): Promise<string>;
  /** Resolves once a fresh connection runs a statement. */
  answers(): Promise<boolean>;
  close(): Promise<void>;
}

async function exec(container: StartedTestContainer, script: string): Promise<string> {
  const result = await container.exec(['bash', '-c', script]);
  if (result.exitCode !== 0) throw new Error(`in the container: ${script}: exit ${result.exitCode}: ${result.output}`);
  return result.output;
}

export async function startDiskFullPostgres(): Promise<DiskFullPostgres> {
  const container = await new GenericContainer(images.postgres)
    .withLabels(labels)
    .withTmpFs({
      [MOUNTS.data]: `rw,size=${MOUNT_SIZE.data},mode=1777`,
      [MOUNTS.wal]: `rw,size=${MOUNT_SIZE.wal},mode=1777`,
    })
    .withEnvironment({
      POSTGRES_USER: USER,
      POSTGRES_PASSWORD: PASSWORD,
      POSTGRES_DB: DATABASE,
      PGDATA: `${MOUNTS.data}/pgdata`,
      POSTGRES_INITDB_ARGS: `--waldir=${MOUNTS.wal}/pg_wal`,
    })
    .withEntrypoint(['bash', '-c'])
    .withCommand([SUPERVISOR])
    .withExposedPorts(5432)
    // The entrypoint opens TCP only once the user and database exist (its setup runs on the socket).
    .withWaitStrategy(Wait.forListeningPorts())
    // initdb and the first start on a machine shared by several suites: give it room.
    .withStartupTimeout(300_000)
    .start();
  const proxy = await startTcpProxy(container.getHost(), container.getMappedPort(5432));
  const dsn = `postgres://${USER}:${PASSWORD}@${proxy.host}:${proxy.port}/${DATABASE}`;
  const answers = async () => {
    const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  };
  await waitFor('PostgreSQL on tmpfs to answer', answers, (ok) => ok, { timeoutMs: 60_000, intervalMs: 250 });
  await runMigrations({ dsn, logger: createLogger('e2e-disk-full-pg', 'warn') });
  const available = async (disk: Disk) => Number((await exec(container, `df --output=avail -B1 ${MOUNTS[disk]} | tail -n 1`)).trim());
  return {
    dsn,
    proxy,
    container,
    async fill(disk) {
      const filler = `${MOUNTS[disk]}/filler`;
      // Megabytes while they fit, then 4 KiB blocks into what is left: nothing remains.
      await exec(
        container,
        `dd if=/dev/zero of=${filler} bs=1M status=none 2>/dev/null; dd if=/dev/zero of=${filler}.tail bs=4k status=none 2>/dev/null; du -sb ${filler} ${filler}.tail | awk '{ s += $1 } END { print s }'`,
      );
      return Number((await exec(container, `du -cb ${filler} ${filler}.tail | tail -n 1 | cut -f1`)).trim());
    },
    async exhaustWal() {
      const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2_000 });
      client.on('error', () => {});
      await client.connect();
      try {
        // txid_current() makes the statement a transaction with an id: its commit is a WAL record.
        for (let switches = 0; switches < 10; switches++) await client.query('SELECT txid_current(), pg_switch_wal()');
      } catch {
        return; // the server went down under the statement: the PANIC wanted
      } finally {
        await client.end().catch(() => {});
      }
      throw new Error('PostgreSQL still writes WAL after 10 segment switches: is the WAL mount full?');
    },
    async free(disk) {
      await exec(container, `rm -f ${MOUNTS[disk]}/filler ${MOUNTS[disk]}/filler.tail`);
    },
    available,
    async logs() {
      const { stdout, stderr } = await run('docker', ['logs', container.getId()], { maxBuffer: 64 * 1024 * 1024 });
      return stdout + stderr;
    },
    answers,
    async close() {
      await proxy.close();
      await container.stop({ remove: true, removeVolumes: true, timeout: 1_000 });
    },
  };
}
