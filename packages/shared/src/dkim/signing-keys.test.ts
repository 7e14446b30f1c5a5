import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { SecretsKeyMissingError, secretsKeyOf } from '../secrets/secrets-key.ts';
import { SealedKeyError, sealPrivateKey } from './sealed-key.ts';
import { checkSecretsKey } from './signing-keys.ts';

const PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n';

/** A database whose unretired DKIM keys are `rows`: the boot check's one statement. */
function keysTable(rows: { domain: string; selector: string; private_key_sealed: Buffer }[]): Queryable {
  return { query: async () => ({ rows: rows.map((row) => ({ key_type: 'ed25519', ...row })) }) } as unknown as Queryable;
}

describe('checkSecretsKey, the boot check of the API and the engine', () => {
  const key = secretsKeyOf(randomBytes(32));
  const row = (domain: string, selector: string) => ({ domain, selector, private_key_sealed: sealPrivateKey(key, { domain, selector }, PEM) });

  it('passes with no key at all while the database holds no DKIM key', async () => {
    await expect(checkSecretsKey(keysTable([]), null)).resolves.toEqual({ current: 0, previous: 0 });
  });

  it('names the one stored key that needs the missing MAIL_SECRETS_KEY, in a sentence, with no "..." for others', async () => {
    const check = checkSecretsKey(keysTable([row('example.com', 'pst2026')]), null);
    await expect(check).rejects.toThrow(SecretsKeyMissingError);
    await expect(check).rejects.toThrow(
      /^MAIL_SECRETS_KEY is not set: opening the DKIM key in the database \(pst2026\._domainkey\.example\.com\) needs it \(32 random bytes/,
    );
  });

  it('counts many keys and names the first three', async () => {
    const rows = ['a', 'b', 'c', 'd', 'e'].map((selector) => row('example.com', selector));
    await expect(checkSecretsKey(keysTable(rows), null)).rejects.toThrow(
      'opening the 5 DKIM keys in the database (a._domainkey.example.com, b._domainkey.example.com, c._domainkey.example.com, and 2 more) needs it',
    );
  });

  it('opens every key with the right MAIL_SECRETS_KEY and refuses another', async () => {
    const db = keysTable([row('example.com', 'pst2026'), row('example.org', 'pst2025')]);
    await expect(checkSecretsKey(db, key)).resolves.toEqual({ current: 2, previous: 0 });
    await expect(checkSecretsKey(db, secretsKeyOf(randomBytes(32)))).rejects.toThrow(SealedKeyError);
  });
});
