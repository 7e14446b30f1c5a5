// `npm start` with its embedded PostgreSQL keeps a MAIL_SECRETS_KEY beside the database, so DKIM keys
// can be created on a fresh machine with nothing set. The key lives in the same data folder as the
// database it unseals (one folder to back up or delete), readable by root only; it is made once, with
// O_EXCL so two starts cannot write two different keys, and a file that does not hold a valid key
// refuses the start rather than being replaced (the DKIM keys sealed with it would be lost).
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseSecretsKey, SECRETS_KEY_BYTES } from '@postern/shared';

export const SECRETS_KEY_FILE = 'secrets.key';

export interface SecretsKeyFile {
  /** The key as MAIL_SECRETS_KEY takes it (base64). */
  value: string;
  file: string;
  created: boolean;
}

export async function loadOrCreateSecretsKey(dataRoot: string): Promise<SecretsKeyFile> {
  const file = path.join(dataRoot, SECRETS_KEY_FILE);
  try {
    await writeFile(file, `${randomBytes(SECRETS_KEY_BYTES).toString('base64')}\n`, { flag: 'wx', mode: 0o600 });
    return { value: await readKey(file), file, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { value: await readKey(file), file, created: false };
  }
}

async function readKey(file: string): Promise<string> {
  const text = (await readFile(file, 'utf8')).trim();
  const parsed = parseSecretsKey(text);
  if (!parsed.ok) {
    throw new Error(`${file} does not hold a MAIL_SECRETS_KEY (${parsed.problem}); restore it from a backup, or set MAIL_SECRETS_KEY`);
  }
  return text;
}
