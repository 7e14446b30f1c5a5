import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseSecretsKey } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { loadOrCreateSecretsKey, SECRETS_KEY_FILE } from './secrets-key-file.ts';

describe('loadOrCreateSecretsKey', () => {
  it('makes a valid key once, readable by its owner only, and returns the same key afterwards', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'postern-key-'));
    const first = await loadOrCreateSecretsKey(dir);
    expect(first.created).toBe(true);
    expect(parseSecretsKey(first.value).ok).toBe(true);
    expect((await stat(first.file)).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateSecretsKey(dir);
    expect(again).toEqual({ ...first, created: false });
  });

  it('refuses a file that holds no valid key instead of replacing it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'postern-key-'));
    await writeFile(path.join(dir, SECRETS_KEY_FILE), 'not a key\n');
    await expect(loadOrCreateSecretsKey(dir)).rejects.toThrow(/does not hold a MAIL_SECRETS_KEY/);
    expect(await readFile(path.join(dir, SECRETS_KEY_FILE), 'utf8')).toBe('not a key\n');
  });
});
