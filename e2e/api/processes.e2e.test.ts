// The real processes: `node apps/api/src/main.ts` boots (migrations, listener, the development
// token when asked), serves, and exits 0 on SIGTERM; `postern token ...` runs as a process against
// the test database, and the token it prints as its last line works until it is revoked. The CLI's
// own file is run directly; one test runs it through the `postern` command (bin/postern.ts).
import { type ChildProcess, execFile, } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { gql, REPO_ROOT, startTestApi } from './helpers/api.ts';
import { spawnApi } from './helpers/child-api.ts';

const run = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'apps/api/src/cli/postern.ts');
const POSTERN = path.join(REPO_ROOT, 'bin/postern.ts');

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('api-processes');
});

afterAll(async () => {
  await db?.drop();
});

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('node apps/api/src/main.ts', () => {
  it('boots, prints a working development token, and exits 0 on SIGTERM', async () => {
    const api = await spawnApi(db.dsn, { MAIL_ENV: 'development', POSTERN_DEV_TOKEN: '1' });
    const child = api.process;
    try {
      const url = api.origin;
      const output = api.output;
      await waitFor(
        'the API to be ready',
        async () => (await fetch(`${url}/readyz`)).status,
        (status) => status === 200,
        { timeoutMs: 30_000 },
      );
      // What /readyz found is a metric too, for the not-ready alert.
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^mail_process_ready\{app="api"\} 1$/m);
      expect(metrics).toMatch(/^mail_readiness_check_ok\{check="postgres",app="api"\} 1$/m);
      const token = await waitFor('the development token on stdout', () => /^\s+(pst_[A-Za-z0-9_-]{43})$/m.exec(output())?.[1] ?? null, Boolean);
      // Written with the token in one write, but a pipe may take part of it and the rest a moment
      // later (packages/shared/src/logging/stdout-sink.ts): waited for, not read once.
      await waitFor('the curl example on stdout', output, (text) => text.includes(`curl -s ${url}/graphql`), { timeoutMs: 5_000 });
      const answer = await gql(`${url}/graphql`, token, '{ queueStats { deadLettersLast24h } }');
      expect(answer.status).toBe(200);
      expect(answer.body.data).toEqual({ queueStats: { deadLettersLast24h: 0 } });
      // One producer for every development token, so idempotency keys survive a restart.
      const { rows } = await db.pool.query("SELECT scopes, producer FROM mail.api_tokens WHERE name LIKE 'dev-%' AND revoked_at IS NULL");
      expect(rows).toEqual([{ scopes: ['admin'], producer: 'dev' }]);

      child.kill('SIGTERM');
      const exit = await exited(child);
      expect(exit, output()).toEqual({ code: 0, signal: null });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

// Each test starts the CLI as a process up to six times, one after another; on a loaded machine a
// start takes 10 to 15 s (98 s for the six of one test was seen), so the deadline is per start.
describe('postern token (the CLI, as a process)', { timeout: 6 * 45_000 }, () => {
  let api: Api;
  const env = () => ({ PATH: process.env.PATH, MAIL_POSTGRES_PRIMARY_DSN: db.dsn });

  beforeAll(async () => {
    api = await startTestApi(db.dsn);
  });

  afterAll(async () => {
    await api?.stop();
  });

  it('is `postern token ...` of the one `postern` command (bin/postern.ts, the root package bin), an executable node script', async () => {
    expect(readFileSync(POSTERN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(() => accessSync(POSTERN, constants.X_OK)).not.toThrow();
    const root = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(root.bin).toEqual({ postern: 'bin/postern.ts' });
    const api = JSON.parse(readFileSync(path.join(REPO_ROOT, 'apps/api/package.json'), 'utf8'));
    expect(api.bin).toBeUndefined();
    const help = await run(process.execPath, [POSTERN, 'token', 'create', '--help'], { env: { PATH: process.env.PATH } });
    expect(help.stdout).toContain('postern token create --name NAME');
    await expect(run(process.execPath, [POSTERN, 'token', 'list'], { env: { PATH: process.env.PATH } })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('MAIL_POSTGRES_PRIMARY_DSN'),
    });
  });

  it('answers --help with exit 0 and an unknown option with exit 2, without needing a database', async () => {
    const bare = { env: { PATH: process.env.PATH } };
    for (const args of [['--help'], ['token', '--help'], ['token', 'create', '-h']]) {
      const help = await run(process.execPath, [CLI, ...args], bare);
      expect(help.stdout, args.join(' ')).toContain('postern token create --name NAME');
    }
    await expect(run(process.execPath, [CLI, 'token', 'create', '--name', 'x', '--scope', 'send', '--force'], bare)).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown argument --force'),
    });
    await expect(run(process.execPath, [CLI, '--verbose', 'token', 'list'], bare)).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown argument --verbose'),
    });
  });

  it('create prints the token as its last line; it works with exactly its scopes until revoked', async () => {
    const created = await run(process.execPath, [CLI, 'token', 'create', '--name', 'ops-reader', '--scope', 'domains:read,aliases:read'], { env: env() });
    const token = created.stdout.trim().split('\n').pop() as string;
    expect(token).toMatch(/^pst_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain('shown only this once');
    // Only the hash is stored.
    const stored = await db.pool.query('SELECT token_hash FROM mail.api_tokens WHERE name = $1', ['ops-reader']);
    expect(stored.rows[0].token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored.rows)).not.toContain(token.slice(4));

    const read = await gql(api, token, '{ domains { edges { node { name } } } }');
    expect(read.body.errors).toBeUndefined();
    const write = await gql(api, token, 'mutation { createDomain(name: "cli.example") { __typename } }');
    expect(write.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'domains:write' });

    const revoked = await run(process.execPath, [CLI, 'token', 'revoke', 'ops-reader'], { env: env() });
    expect(revoked.stdout).toContain('revoked');
    expect((await gql(api, token, '{ domains { edges { node { name } } } }')).status).toBe(401);

    const listed = await run(process.execPath, [CLI, 'token', 'list'], { env: env() });
    expect(listed.stdout).toMatch(/^ops-reader\tdomains:read,aliases:read\tapi:ops-reader\trevoked /m);
  });

  it('create --producer gives the token the one producer it sends as; list shows it; another source is FORBIDDEN', async () => {
    const created = await run(process.execPath, [CLI, 'token', 'create', '--name', 'billing-2', '--scope', 'send', '--producer', 'billing'], { env: env() });
    expect(created.stderr).toContain('producer "billing"');
    const token = created.stdout.trim().split('\n').pop() as string;
    const send = (source?: string) =>
      gql(api, token, 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { ... on SendEmailSuccess { data { delivery { source } } } } }', {
        input: { to: 'cli@customers.test', idempotencyKey: `cli-${source ?? 'none'}`, rendered: { subject: 's', text: 't' }, ...(source ? { source } : {}) },
      });
    expect((await send()).body.data).toEqual({ sendEmail: { data: { delivery: { source: 'billing' } } } });
    expect((await send('crm')).body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'input.source', producer: 'billing' });

    const listed = await run(process.execPath, [CLI, 'token', 'list'], { env: env() });
    expect(listed.stdout).toMatch(/^billing-2\tsend\tbilling\tactive\t/m);

    for (const producer of ['smtp', 'api:someone-else', 'two words']) {
      await expect(run(process.execPath, [CLI, 'token', 'create', '--name', 'p-bad', '--scope', 'send', '--producer', producer], { env: env() })).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining(`producer "${producer}"`),
      });
    }
  });

  it('refuses unknown scopes, duplicate names and unknown tokens with a non-zero exit', async () => {
    await expect(run(process.execPath, [CLI, 'token', 'create', '--name', 'x', '--scope', 'root'], { env: env() })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('unknown scope(s): root'),
    });
    await run(process.execPath, [CLI, 'token', 'create', '--name', 'twice', '--scope', 'send'], { env: env() });
    await expect(run(process.execPath, [CLI, 'token', 'create', '--name', 'twice', '--scope', 'send'], { env: env() })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('already exists'),
    });
    await expect(run(process.execPath, [CLI, 'token', 'revoke', 'never-existed'], { env: env() })).rejects.toMatchObject({ code: 1 });
    await expect(run(process.execPath, [CLI, 'token', 'create', '--scope', 'send'], { env: env() })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--name is required'),
    });
    await expect(run(process.execPath, [CLI, 'token', 'list'], { env: { PATH: process.env.PATH } })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('MAIL_POSTGRES_PRIMARY_DSN'),
    });
  });
});
