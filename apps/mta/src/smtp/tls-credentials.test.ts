import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '@postern/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTlsCredentials, unreadableFileProblem } from './tls-credentials.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-tls-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const key = path.join(dir, 'key.pem');
writeFileSync(key, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));

async function problemsOf(run: () => Promise<unknown>): Promise<readonly string[]> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadTlsCredentials: the STARTTLS certificate fails the start loudly', () => {
  it('names the variable and the file that cannot be read, both at once', async () => {
    const missingCert = path.join(dir, 'nope-cert.pem');
    expect(await problemsOf(() => loadTlsCredentials({ certFile: missingCert, keyFile: dir }))).toEqual([
      `MAIL_MTA_TLS_CERT: cannot read ${missingCert} (ENOENT)`,
      `MAIL_MTA_TLS_KEY: cannot read ${dir} (EISDIR)`,
    ]);
  });

  it('says which uid lacks permission on a file it may not read (root, which runs these tests, reads any)', () => {
    const denied = Object.assign(new Error('permission denied'), { code: 'EACCES' });
    expect(unreadableFileProblem('MAIL_MTA_TLS_KEY', '/etc/postern/tls/key.pem', denied, 10001)).toBe(
      'MAIL_MTA_TLS_KEY: cannot read /etc/postern/tls/key.pem (EACCES: this process runs as uid 10001, which needs read permission on the file and search permission on its folders)',
    );
    const missing = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    expect(unreadableFileProblem('MAIL_MTA_TLS_KEY', '/k.pem', missing, 10001)).toBe('MAIL_MTA_TLS_KEY: cannot read /k.pem (ENOENT)');
  });

  it('refuses a file that is not PEM', async () => {
    const notPem = path.join(dir, 'cert.txt');
    writeFileSync(notPem, 'hello');
    expect(await problemsOf(() => loadTlsCredentials({ certFile: notPem, keyFile: key }))).toEqual([
      `MAIL_MTA_TLS_CERT: ${notPem} is not a PEM file (no "-----BEGIN" line)`,
    ]);
  });

  it('refuses a certificate and key that do not make a usable pair', async () => {
    const brokenCert = path.join(dir, 'broken-cert.pem');
    writeFileSync(brokenCert, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    const [problem, ...rest] = await problemsOf(() => loadTlsCredentials({ certFile: brokenCert, keyFile: key }));
    expect(rest).toEqual([]);
    expect(problem).toContain(`MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY: ${brokenCert} and ${key} are not a usable certificate and key (`);
  });
});
