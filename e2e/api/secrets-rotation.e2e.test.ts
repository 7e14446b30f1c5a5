// A rotation of MAIL_SECRETS_KEY against a real PostgreSQL, through the real `postern secrets`
// command (a child process, as an operator runs it): while MAIL_SECRETS_KEY_PREVIOUS is set the
// values it sealed still open and new ones are sealed with the new key; `postern secrets reseal`
// seals the old ones again, after which the new key alone opens every DKIM key and route password
// (the same plaintext: a DKIM key keeps signing with the same key); a value neither key opens makes
// the reseal change nothing and name it; the API and the engine say at start what is left to do;
// and the reseal's list of sealed columns is the schema's.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import {
  checkSecretsAtStart,
  checkSecretsKey,
  createDkimKey,
  createLogger,
  loadSigningKey,
  lookupRoute,
  openRoutePassword,
  SEALED_COLUMNS,
  type SecretsKey,
  secretsKeyOf,
  setRoute,
} from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

const root = path.resolve(import.meta.dirname, '..', '..');
let db: TestDatabase;

const [oldKey, newKey, strayKey] = [randomBytes(32), randomBytes(32), randomBytes(32)];
const before = secretsKeyOf(oldKey);
const rotating = secretsKeyOf(newKey, oldKey);
const after = secretsKeyOf(newKey);

beforeAll(async () => {
  db = await createTestDatabase('api-secrets-rotation');
});

afterAll(async () => {
  await db?.drop();
});

/** `postern secrets ...` as an operator runs it, with these keys in its environment. */
function postern(args: string[], keys: { current?: Buffer; previous?: Buffer }): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', MAIL_POSTGRES_PRIMARY_DSN: db.dsn };
  if (keys.current) env.MAIL_SECRETS_KEY = keys.current.toString('base64');
  if (keys.previous) env.MAIL_SECRETS_KEY_PREVIOUS = keys.previous.toString('base64');
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'bin', 'postern.ts'), 'secrets', ...args], { cwd: root, env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

async function routePassword(domain: string, key: SecretsKey): Promise<string> {
  const rule = await lookupRoute(db.pool, domain);
  if (!rule?.auth) throw new Error(`no credentials on the route of ${domain}`);
  return openRoutePassword(key, domain, rule.auth);
}

function capturingLogger() {
  const lines: Array<{ level: number; msg: string }> = [];
  return { lines, logger: createLogger('rotation-test', 'info', { destination: { write: (line: string) => lines.push(JSON.parse(line)) } }) };
}

describe('rotating MAIL_SECRETS_KEY', () => {
  it('covers every sealed column of the schema (bytea, named *_sealed)', async () => {
    const { rows } = await db.pool.query<{ column: string }>(
      `SELECT table_schema || '.' || table_name || '.' || column_name AS column FROM information_schema.columns
        WHERE table_schema = 'mail' AND data_type = 'bytea' AND column_name LIKE '%\\_sealed' ORDER BY 1`,
    );
    expect(rows.map((row) => row.column)).toEqual([...SEALED_COLUMNS].sort());
  });

  it('the old values open during the rotation, reseal seals them again, and then the new key alone opens everything', async () => {
    await createDkimKey(db.pool, before, { domain: 'one.rotate.test', selector: 'r1', keyType: 'ed25519' });
    await createDkimKey(db.pool, before, { domain: 'two.rotate.test', selector: 'r1', keyType: 'rsa2048' });
    await setRoute(db.pool, { domain: 'relay.rotate.test', relay: 'smtp.relay.test:587', tls: 'required', auth: { username: 'postern', password: 'the old horse' } }, before);
    const signingBefore = await loadSigningKey(db.pool, before, 'one.rotate.test');

    // Step 1: every process restarted with the new key and the previous one.
    expect(await checkSecretsKey(db.pool, rotating)).toEqual({ current: 0, previous: 2 });
    expect((await loadSigningKey(db.pool, rotating, 'one.rotate.test'))?.privateKeyPem).toBe(signingBefore?.privateKeyPem);
    expect(await routePassword('relay.rotate.test', rotating)).toBe('the old horse');
    // What is created meanwhile is sealed with the new key.
    await createDkimKey(db.pool, rotating, { domain: 'three.rotate.test', selector: 'r1', keyType: 'ed25519' });
    const status = await postern(['status'], { current: newKey, previous: oldKey });
    expect(status).toMatchObject({ code: 0, stderr: '' });
    expect(status.stdout).toBe(
      [
        'DKIM keys: 1 sealed with MAIL_SECRETS_KEY, 2 only MAIL_SECRETS_KEY_PREVIOUS opens',
        'route passwords: 0 sealed with MAIL_SECRETS_KEY, 1 only MAIL_SECRETS_KEY_PREVIOUS opens',
        'run postern secrets reseal to seal those again with MAIL_SECRETS_KEY',
        '',
      ].join('\n'),
    );
    const atStart = capturingLogger();
    await checkSecretsAtStart(db.pool, rotating, atStart.logger);
    expect(atStart.lines.map((line) => line.msg)).toEqual([
      'DKIM keys open: 1 with MAIL_SECRETS_KEY, 2 only with MAIL_SECRETS_KEY_PREVIOUS',
      'MAIL_SECRETS_KEY_PREVIOUS still opens 3 secret(s): run postern secrets reseal, then remove it from every process',
    ]);

    // Step 2: the reseal.
    const reseal = await postern(['reseal'], { current: newKey, previous: oldKey });
    expect(reseal).toMatchObject({ code: 0, stderr: '' });
    expect(reseal.stdout).toBe(
      [
        'DKIM keys: 2 resealed, 1 already sealed with MAIL_SECRETS_KEY',
        'route passwords: 1 resealed, 0 already sealed with MAIL_SECRETS_KEY',
        'resealed 3; nothing is sealed with MAIL_SECRETS_KEY_PREVIOUS any more: it can be removed from every process',
        '',
      ].join('\n'),
    );

    // Step 3: the previous key removed. Everything opens with the new key alone, as the same secret.
    expect(await checkSecretsKey(db.pool, after)).toEqual({ current: 3, previous: 0 });
    expect((await loadSigningKey(db.pool, after, 'one.rotate.test'))?.privateKeyPem).toBe(signingBefore?.privateKeyPem);
    expect(await routePassword('relay.rotate.test', after)).toBe('the old horse');
    await expect(checkSecretsKey(db.pool, before)).rejects.toThrow(/cannot be opened with MAIL_SECRETS_KEY/);
    await expect(routePassword('relay.rotate.test', before)).rejects.toThrow(/cannot be opened with MAIL_SECRETS_KEY/);
    const done = capturingLogger();
    await checkSecretsAtStart(db.pool, rotating, done.logger);
    expect(done.lines.map((line) => line.msg)).toEqual([
      'DKIM keys open with MAIL_SECRETS_KEY',
      'MAIL_SECRETS_KEY_PREVIOUS is set but nothing is sealed with it any more: remove it from every process',
    ]);
    // Again: nothing left to do.
    const again = await postern(['reseal'], { current: newKey, previous: oldKey });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('DKIM keys: 0 resealed, 3 already sealed with MAIL_SECRETS_KEY');
  });

  it('a value neither key opens refuses the whole reseal, names it, and changes nothing', async () => {
    await createDkimKey(db.pool, before, { domain: 'four.rotate.test', selector: 'r1', keyType: 'ed25519' });
    await setRoute(db.pool, { domain: 'stray.rotate.test', relay: 'smtp.relay.test:587', tls: 'required', auth: { username: 'stray', password: 'p' } }, secretsKeyOf(strayKey));
    const sealedBefore = await db.pool.query<{ domain: string; sealed: Buffer }>(
      `SELECT domain, private_key_sealed AS sealed FROM mail.dkim_keys WHERE private_key_sealed IS NOT NULL ORDER BY id`,
    );

    const status = await postern(['status'], { current: newKey, previous: oldKey });
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(/^cannot be opened with MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS: route password stray\.rotate\.test: wrong key/m);
    const reseal = await postern(['reseal'], { current: newKey, previous: oldKey });
    expect(reseal.code).toBe(1);
    expect(reseal.stdout).toBe('');
    expect(reseal.stderr).toMatch(/^cannot be opened with MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS: route password stray\.rotate\.test: wrong key/m);
    expect(reseal.stderr).toContain('postern secrets reseal: nothing was changed');
    // With one key there is no "either".
    const oneKey = await postern(['status'], { current: newKey });
    expect(oneKey.code).toBe(1);
    expect(oneKey.stderr).toMatch(/^cannot be opened with MAIL_SECRETS_KEY: route password stray\.rotate\.test: wrong key/m);
    const sealedAfter = await db.pool.query<{ domain: string; sealed: Buffer }>(
      `SELECT domain, private_key_sealed AS sealed FROM mail.dkim_keys WHERE private_key_sealed IS NOT NULL ORDER BY id`,
    );
    expect(sealedAfter.rows).toEqual(sealedBefore.rows);
    // four.rotate.test is still sealed with the previous key only.
    expect((await loadSigningKey(db.pool, rotating, 'four.rotate.test'))?.domain).toBe('four.rotate.test');
    await expect(loadSigningKey(db.pool, after, 'four.rotate.test')).rejects.toThrow(/cannot be opened/);
  });

  it('refuses to run without MAIL_SECRETS_KEY, and says how it is used', async () => {
    const missing = await postern(['status'], {});
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('MAIL_SECRETS_KEY is not set');
    const previousAlone = await postern(['reseal'], { previous: oldKey });
    expect(previousAlone.code).toBe(2);
    expect(previousAlone.stderr).toContain('MAIL_SECRETS_KEY_PREVIOUS: set only beside the new MAIL_SECRETS_KEY');
    const usage = await postern(['rotate'], { current: newKey });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^postern secrets: unknown command "rotate"\nusage:/);
    expect((await postern(['--help'], {})).stdout).toContain('postern secrets reseal');
  });
});
