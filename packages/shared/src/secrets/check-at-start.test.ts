// The start's line about the DKIM keys names the key that opened them: during a rotation, before the
// reseal, that is MAIL_SECRETS_KEY_PREVIOUS, and saying MAIL_SECRETS_KEY there told the operator the
// reseal was done when it was not.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { sealPrivateKey } from '../dkim/sealed-key.ts';
import type { Logger } from '../logging/logger.ts';
import { checkSecretsAtStart, dkimKeysOpenedMessage } from './check-at-start.ts';
import { type SecretsKey, secretsKeyOf } from './secrets-key.ts';

const [oldKey, newKey] = [randomBytes(32), randomBytes(32)];
const names = [
  { domain: 'one.example.test', selector: 's1' },
  { domain: 'two.example.test', selector: 's1' },
];

/** A database holding the DKIM keys `names`, the first `sealedWithNew` of them sealed with the new
 *  key and the rest with the old one, and no route passwords. */
function databaseWithKeys(sealedWithNew: number): Queryable {
  const keys = names.map((name, at) => ({ ...name, sealed: sealPrivateKey(secretsKeyOf(at < sealedWithNew ? newKey : oldKey), name, `PEM of ${name.domain}`) }));
  const query = async (sql: string) => {
    if (sql.includes("status <> 'retired'")) {
      return { rows: keys.map((key) => ({ domain: key.domain, selector: key.selector, key_type: 'ed25519', private_key_sealed: key.sealed })) };
    }
    if (sql.includes('FROM mail.dkim_keys')) {
      return { rows: keys.map((key, at) => ({ id: String(at + 1), label: `${key.selector}._domainkey.${key.domain}`, domain: key.domain, name: key.selector, sealed: key.sealed })) };
    }
    return { rows: [] };
  };
  return { query } as unknown as Queryable;
}

async function startLines(db: Queryable, secretsKey: SecretsKey): Promise<Array<{ level: string; msg: string; fields: object }>> {
  const lines: Array<{ level: string; msg: string; fields: object }> = [];
  const log = (level: string) => (fields: object | string, msg?: string) =>
    typeof fields === 'string' ? lines.push({ level, msg: fields, fields: {} }) : lines.push({ level, msg: msg ?? '', fields });
  await checkSecretsAtStart(db, secretsKey, { info: log('info'), warn: log('warn') } as unknown as Logger);
  return lines;
}

describe('checkSecretsAtStart', () => {
  it('says MAIL_SECRETS_KEY_PREVIOUS opened the DKIM keys while the rotation has not resealed them', async () => {
    const lines = await startLines(databaseWithKeys(0), secretsKeyOf(newKey, oldKey));
    expect(lines.map(({ level, msg }) => `${level} ${msg}`)).toEqual([
      'info DKIM keys open with MAIL_SECRETS_KEY_PREVIOUS (none yet with MAIL_SECRETS_KEY)',
      'warn MAIL_SECRETS_KEY_PREVIOUS still opens 2 secret(s): run postern secrets reseal, then remove it from every process',
    ]);
    expect(lines[0]?.fields).toEqual({ keys: 2, current: 0, previous: 2 });
  });

  it('counts each key when some are resealed and some not', async () => {
    const lines = await startLines(databaseWithKeys(1), secretsKeyOf(newKey, oldKey));
    expect(lines[0]?.msg).toBe('DKIM keys open: 1 with MAIL_SECRETS_KEY, 1 only with MAIL_SECRETS_KEY_PREVIOUS');
  });

  it('says MAIL_SECRETS_KEY when it opened every key, with or without a previous key set', async () => {
    expect((await startLines(databaseWithKeys(2), secretsKeyOf(newKey)))[0]?.msg).toBe('DKIM keys open with MAIL_SECRETS_KEY');
    const rotated = await startLines(databaseWithKeys(2), secretsKeyOf(newKey, oldKey));
    expect(rotated.map(({ msg }) => msg)).toEqual([
      'DKIM keys open with MAIL_SECRETS_KEY',
      'MAIL_SECRETS_KEY_PREVIOUS is set but nothing is sealed with it any more: remove it from every process',
    ]);
  });

  it('refuses to start when neither key opens a DKIM key', async () => {
    await expect(startLines(databaseWithKeys(0), secretsKeyOf(newKey))).rejects.toThrow(/s1\._domainkey\.one\.example\.test cannot be opened/);
  });
});

describe('dkimKeysOpenedMessage', () => {
  it('says nothing when there are no DKIM keys', () => {
    expect(dkimKeysOpenedMessage({ current: 0, previous: 0 })).toBeNull();
  });
});
