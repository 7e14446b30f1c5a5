// `npm start` as a newcomer runs it: the embedded PostgreSQL comes up with the schema, every app
// that exists answers /readyz, and SIGTERM stops everything cleanly (exit 0, database down).
// Its own data folder and free ports, so it never meets a developer's running instance.
// As root it runs from a copy of the checkout in a folder only root can enter (a clone under
// /root): there the user postgres reaches neither the binaries nor the data where they are, and
// the launcher must place both where it can (scripts/embedded-postgres/runtime-paths.ts).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/index.ts';

const root = path.resolve(import.meta.dirname, '..', '..');

const asRoot = process.getuid?.() === 0;

/** As root: the checkout hard-linked (same files, no copying of node_modules) into a 0700 folder. */
async function rootOnlyCheckout(): Promise<{ folder: string; project: string }> {
  const folder = await mkdtemp(path.join(tmpdir(), 'postern-root-only-'));
  await chmod(folder, 0o700);
  const project = path.join(folder, 'postern');
  try {
    execFileSync('cp', ['-al', root, project]);
  } catch {
    execFileSync('cp', ['-a', root, project]);
  }
  await rm(path.join(project, '.data'), { recursive: true, force: true });
  return { folder, project };
}

describe('npm start', () => {
  let child: ChildProcess | undefined;
  const cleanup: string[] = [];

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    for (const folder of cleanup) await rm(folder, { recursive: true, force: true });
  });

  it(`starts embedded PostgreSQL with the schema and the apps${asRoot ? ', as root from a folder only root can enter,' : ''} and stops cleanly on SIGTERM`, async () => {
    const ports = {
      pg: await getPort(),
      smtp: await getPort(),
      mtaHttp: await getPort(),
      internal: await getPort(),
      api: await getPort(),
    };
    let project = root;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      POSTERN_EMBEDDED_PG_PORT: String(ports.pg),
      MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${ports.smtp}`,
      MAIL_MTA_HTTP_ADDR: `127.0.0.1:${ports.mtaHttp}`,
      MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${ports.internal}`,
      MAIL_API_HTTP_ADDR: `127.0.0.1:${ports.api}`,
      MAIL_SHUTDOWN_TIMEOUT: '10s',
    };
    if (asRoot) {
      const checkout = await rootOnlyCheckout();
      cleanup.push(checkout.folder);
      project = checkout.project;
      // Where the launcher puts the data of a checkout the user postgres cannot reach.
      const hash = createHash('sha256').update(project).digest('hex').slice(0, 8);
      cleanup.push(path.join('/var/lib/postern/data', `postern-${hash}`));
    } else {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-start-'));
      cleanup.push(dataDir);
      env.POSTERN_DATA_DIR = dataDir;
    }
    child = spawn('npm', ['start'], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

    // Every app that exists in this checkout listens as soon as npm start says it is running (the
    // line once came 2–3 s before the listeners: refused), and is ready. Asked at once: a refused
    // connection fails; a 503 (a check slow on a loaded machine) is asked again, as before.
    const readyz: Record<string, number> = { mta: ports.mtaHttp, core: ports.internal, api: ports.api };
    const { readdirSync, existsSync } = await import('node:fs');
    const apps = readdirSync(path.join(project, 'apps')).filter((name) => existsSync(path.join(project, 'apps', name, 'src', 'main.ts')));
    const askReadyz = (port: number) =>
      fetch(`http://127.0.0.1:${port}/readyz`).then(
        (response) => response.status,
        (error: Error) => `no answer (${(error.cause as Error | undefined)?.message ?? error.message})`,
      );
    const atOnce = await Promise.all(apps.filter((app) => readyz[app]).map(async (app) => [app, await askReadyz(readyz[app] as number)] as const));
    expect(atOnce.filter(([, status]) => typeof status !== 'number'), 'apps that did not answer /readyz when npm start said Postern is running').toEqual([]);
    for (const app of apps) {
      const port = readyz[app];
      if (!port) continue;
      await waitFor(`${app} /readyz to answer 200`, () => askReadyz(port), (status) => status === 200, { timeoutMs: 60_000, intervalMs: 200 });
    }

    // DKIM works with nothing set: npm start keeps a MAIL_SECRETS_KEY beside its database, so the
    // printed development token can create a key at once (the API refuses NOT_CONFIGURED without one).
    if (apps.includes('api')) {
      const token = /authorization: Bearer (\S+?)'/.exec(output)?.[1];
      expect(token, output.slice(-3000)).toBeDefined();
      const answer = await fetch(`http://127.0.0.1:${ports.api}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({
          query: `mutation { createDkimKey(input: { domain: "start.test", selector: "s1" }) {
            __typename ... on CreateDkimKeySuccess { data { status dnsRecord { name } } } ... on Error { message } } }`,
        }),
      }).then((response) => response.json());
      expect(answer, JSON.stringify(answer)).toMatchObject({
        data: { createDkimKey: { __typename: 'CreateDkimKeySuccess', data: { status: 'active', dnsRecord: { name: 's1._domainkey.start.test' } } } },
      });
      expect(output).toContain('MAIL_SECRETS_KEY read from the data folder');
    }

    child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      waitFor('npm start to exit after SIGTERM', () => child?.exitCode, (value) => value !== null && value !== undefined, {
        timeoutMs: 60_000,
      }),
    ]);
    expect(code, output.slice(-3000)).toBe(0);
    // Node may report the exit before the last lines are read from the pipe: waited for, not read once.
    await waitFor('the last lines of npm start', () => output, (text) => text.includes('embedded PostgreSQL stopped'), { timeoutMs: 5_000 });
    if (asRoot) expect(output).toContain('the user postgres cannot reach');

    // The database really is down: nothing is left running behind the user's back.
    const after = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2_000 });
    await expect(after.connect()).rejects.toThrow();
  });

  it('refuses a second npm start on the data folder of one that runs, and leaves the running one its database', async () => {
    // Measured before: the second start took the running server for one "left running by an
    // earlier start", stopped it (every session of the first Postern cut), started its own and
    // restarted its apps forever on ports the first still held; stopping it then left the first
    // with no database at all.
    const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-start-twice-'));
    cleanup.push(dataDir);
    const pgPort = await getPort();
    const envFor = async (): Promise<NodeJS.ProcessEnv> => ({
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      POSTERN_DATA_DIR: dataDir,
      POSTERN_EMBEDDED_PG_PORT: String(pgPort),
      MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${await getPort()}`,
      MAIL_MTA_HTTP_ADDR: `127.0.0.1:${await getPort()}`,
      MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${await getPort()}`,
      MAIL_API_HTTP_ADDR: `127.0.0.1:${await getPort()}`,
      MAIL_SHUTDOWN_TIMEOUT: '10s',
    });
    const run = async () => {
      const started = spawn('npm', ['start'], { cwd: root, env: await envFor(), stdio: ['ignore', 'pipe', 'pipe'] });
      const state = { output: '', code: undefined as number | null | undefined };
      started.stdout?.on('data', (chunk: Buffer) => {
        state.output += chunk.toString();
      });
      started.stderr?.on('data', (chunk: Buffer) => {
        state.output += chunk.toString();
      });
      started.once('exit', (code) => {
        state.code = code;
      });
      return { child: started, state };
    };
    const first = await run();
    child = first.child;
    await waitFor('the first npm start to report that Postern is running', () => first.state.output, (text) => text.includes('Postern is running'), {
      timeoutMs: 90_000,
      intervalMs: 100,
    });
    const dsn = `postgres://postern:postern@127.0.0.1:${pgPort}/postern`;
    const session = new pg.Client({ connectionString: dsn });
    await session.connect();
    const before = (await session.query('SELECT pg_postmaster_start_time()::text AS started')).rows[0].started as string;

    const second = await run();
    try {
      const code = await waitFor('the second npm start to exit', () => second.state.code, (value) => value !== undefined, {
        timeoutMs: 90_000,
        intervalMs: 100,
      });
      expect(code, second.state.output.slice(-3000)).toBe(1);
      const refused = new RegExp(`another npm start \\(pid \\d+\\) runs the data folder ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
      await waitFor('the second npm start to say why it refused', () => second.state.output, (text) => refused.test(text), { timeoutMs: 5_000 });
      expect(second.state.output).not.toContain('left running by an earlier start');
    } finally {
      if (second.state.code === undefined) second.child.kill('SIGKILL');
    }
    // The first one's server never stopped: the session opened before still works, same server.
    const after = (await session.query('SELECT pg_postmaster_start_time()::text AS started')).rows[0].started as string;
    expect(after).toBe(before);
    await session.end();

    first.child.kill('SIGTERM');
    const code = await waitFor('the first npm start to exit after SIGTERM', () => first.state.code, (value) => value !== undefined, {
      timeoutMs: 60_000,
    });
    expect(code, first.state.output.slice(-3000)).toBe(0);
    await waitFor('the last lines of the first npm start', () => first.state.output, (text) => text.includes('embedded PostgreSQL stopped'), { timeoutMs: 5_000 });
  });
});
