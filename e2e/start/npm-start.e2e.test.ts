// `npm start` as a newcomer runs it: the embedded PostgreSQL comes up with the schema, every app
// that exists answers /readyz, and SIGTERM stops everything cleanly (exit 0, database down).
// Its own data folder and free ports, so it never meets a developer's running instance.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/index.ts';

const root = path.resolve(import.meta.dirname, '..', '..');

describe('npm start', () => {
  let child: ChildProcess | undefined;
  let dataDir: string | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('starts embedded PostgreSQL with the schema and the apps, and stops cleanly on SIGTERM', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'postern-start-'));
    const ports = {
      pg: await getPort(),
      smtp: await getPort(),
      mtaHttp: await getPort(),
      internal: await getPort(),
      api: await getPort(),
    };
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      POSTERN_DATA_DIR: dataDir,
      POSTERN_EMBEDDED_PG_PORT: String(ports.pg),
      MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${ports.smtp}`,
      MAIL_MTA_HTTP_ADDR: `127.0.0.1:${ports.mtaHttp}`,
      MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${ports.internal}`,
      MAIL_API_HTTP_ADDR: `127.0.0.1:${ports.api}`,
      MAIL_SHUTDOWN_TIMEOUT: '10s',
    };
    child = spawn(process.execPath, [path.join(root, 'scripts', 'start.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));

    await waitFor('npm start to report that Postern is running', () => output, (text) => text.includes('Postern is running'), {
      timeoutMs: 90_000,
      intervalMs: 100,
    });

    const dsn = `postgres://postern:postern@127.0.0.1:${ports.pg}/postern`;
    const client = new pg.Client({ connectionString: dsn });
    await client.connect();
    const { rows } = await client.query(`SELECT count(*)::int AS tables FROM information_schema.tables WHERE table_schema = 'mail'`);
    await client.end();
    expect(rows[0].tables).toBeGreaterThanOrEqual(13);

    // Every app that exists in this checkout is up and ready.
    const readyz: Record<string, number> = { mta: ports.mtaHttp, core: ports.internal, api: ports.api };
    const { readdirSync, existsSync } = await import('node:fs');
    const apps = readdirSync(path.join(root, 'apps')).filter((name) => existsSync(path.join(root, 'apps', name, 'src', 'main.ts')));
    for (const app of apps) {
      const port = readyz[app];
      if (!port) continue;
      await waitFor(
        `${app} /readyz to answer 200`,
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status,
        (status) => status === 200,
        { timeoutMs: 60_000, intervalMs: 200 },
      );
    }

    child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      waitFor('npm start to exit after SIGTERM', () => child?.exitCode, (value) => value !== null && value !== undefined, {
        timeoutMs: 60_000,
      }),
    ]);
    expect(code, output.slice(-3000)).toBe(0);
    expect(output).toContain('embedded PostgreSQL stopped');

    // The database really is down: nothing is left running behind the user's back.
    const after = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2_000 });
    await expect(after.connect()).rejects.toThrow();
  });
});
