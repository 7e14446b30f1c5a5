// A real PgBouncer (Debian's `pgbouncer`, on the host: .ci/run installs it) in front of the test
// PostgreSQL, as operators put one: each database alias with its own pool_mode. Clients connect
// without a password (auth_type = trust) and PgBouncer logs in to PostgreSQL with the test's user.
// PgBouncer refuses to run as root, so as root it runs as `nobody`.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { waitFor } from './wait-for.ts';

export type PoolMode = 'session' | 'transaction';

export interface PgBouncer {
  host: string;
  port: number;
  /** A DSN for `database` through the alias of that pool mode. */
  dsn(database: string, mode: PoolMode): string;
  /** What PgBouncer logged (to stderr), for a failing test's message. */
  log(): string;
  close(): Promise<void>;
}

function pgbouncerBinary(): string {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin']) {
    const candidate = path.join(dir, 'pgbouncer');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error('pgbouncer is not installed; this test needs a real one. Install it with: apt-get install -y pgbouncer');
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** PgBouncer serving each of `databases` under two aliases, `<name>_session` and `<name>_transaction`. */
export async function startPgBouncer(databases: string[]): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const { host, port: serverPort, user, password } = inject('postern').postgres;
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-pgbouncer-'));
  chmodSync(dir, 0o755);
  const lines = ['[databases]'];
  for (const database of databases) {
    for (const mode of ['session', 'transaction'] as const) {
      lines.push(`${database}_${mode} = host=${host} port=${serverPort} dbname=${database} user=${user} password=${password} pool_mode=${mode}`);
    }
  }
  lines.push(
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    "unix_socket_dir = ''",
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'users.txt')}`,
    'max_client_conn = 200',
    // In session mode each client connection holds a server connection: the pool must cover every
    // process's pools, or the excess waits at PgBouncer (docs/deploy.md). 20, the default, did not
    // cover the test's edge and engine: RCPTs waited past the lookup deadline and were answered 451.
    'default_pool_size = 100',
    // No ignore_startup_parameters: a startup parameter PgBouncer refuses fails the test, as it
    // fails an operator's setup (and ignoring one would drop what it sets without a word).
  );
  writeFileSync(path.join(dir, 'pgbouncer.ini'), `${lines.join('\n')}\n`, { mode: 0o644 });
  writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`, { mode: 0o644 });
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = asRoot
    ? spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', binary, path.join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(binary, [path.join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  await waitFor(
    `PgBouncer listening on 127.0.0.1:${port}`,
    () => {
      if (gone) throw new Error(`pgbouncer exited: ${output}`);
      return new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.end();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
    },
    (up) => up,
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  return {
    host: '127.0.0.1',
    port,
    dsn: (database, mode) => `postgres://${user}@127.0.0.1:${port}/${database}_${mode}`,
    log: () => output,
    async close() {
      if (!gone) {
        child.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
