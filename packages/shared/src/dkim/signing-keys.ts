// What the engine signs with: the active key of a From domain, opened with MAIL_SECRETS_KEY. The
// engine keeps what it read while mail.dkim_keys_generation (bumped by every write to the keys)
// stays the same in its claims (apps/core/src/delivery/signing-key-cache.ts): a key created, rotated
// or retired through the API signs, or stops signing, from the first delivery claimed after its
// commit, on every engine.
// checkSecretsKey() is the boot check of the API and the engine: when keys exist, MAIL_SECRETS_KEY
// must be set and must open every one of them, so a missing or mistyped value stops the process at
// start with a clear error, not at the first signature hours later.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { type SecretsKey, SecretsKeyMissingError } from '../secrets/secrets-key.ts';
import type { DkimKeyType } from './key-pair.ts';
import { openPrivateKey, openPrivateKeyFrom } from './sealed-key.ts';

export interface SigningKey {
  domain: string;
  selector: string;
  keyType: DkimKeyType;
  privateKeyPem: string;
}

interface SealedRow {
  domain: string;
  selector: string;
  key_type: DkimKeyType;
  private_key_sealed: Buffer;
}

const ACTIVE_KEY_SQL = `
SELECT domain, selector, key_type, private_key_sealed FROM mail.dkim_keys WHERE domain = $1 AND status = 'active'`;

/** The active key of `domain` (A-label, lower case), or null when the domain has none. Throws
 *  SecretsKeyMissingError or SealedKeyError when there is one that cannot be opened. */
export async function loadSigningKey(db: Queryable, secretsKey: SecretsKey | null, domain: string): Promise<SigningKey | null> {
  const { rows } = await db.query<SealedRow>({ name: 'postern_dkim_active_key', text: ACTIVE_KEY_SQL, values: [domain] });
  const row = rows[0];
  if (!row) return null;
  if (!secretsKey) throw new SecretsKeyMissingError(`signing mail from ${domain} (it has an active DKIM key)`);
  const privateKeyPem = openPrivateKey(secretsKey, row, row.private_key_sealed);
  return { domain: row.domain, selector: row.selector, keyType: row.key_type, privateKeyPem };
}

const UNRETIRED_KEYS_SQL = `
SELECT domain, selector, key_type, private_key_sealed FROM mail.dkim_keys WHERE status <> 'retired' ORDER BY id`;

/** What needs the missing MAIL_SECRETS_KEY at boot, as the rest of its message reads: "... needs it". */
function unretiredKeysNamed(rows: readonly SealedRow[]): string {
  const named = rows.slice(0, 3).map((row) => `${row.selector}._domainkey.${row.domain}`);
  const more = rows.length > named.length ? `, and ${rows.length - named.length} more` : '';
  return `opening the ${rows.length === 1 ? 'DKIM key' : `${rows.length} DKIM keys`} in the database (${named.join(', ')}${more})`;
}

/** How many DKIM keys each key opened: `previous` counts those only MAIL_SECRETS_KEY_PREVIOUS opens. */
export interface DkimKeysOpened {
  current: number;
  previous: number;
}

/** Boot check: every key that may sign opens with `secretsKey` (MAIL_SECRETS_KEY, or during a
 *  rotation MAIL_SECRETS_KEY_PREVIOUS). Returns how many each of the two opened. */
export async function checkSecretsKey(db: Queryable, secretsKey: SecretsKey | null): Promise<DkimKeysOpened> {
  const { rows } = await db.query<SealedRow>(UNRETIRED_KEYS_SQL);
  const opened: DkimKeysOpened = { current: 0, previous: 0 };
  if (rows.length === 0) return opened;
  if (!secretsKey) throw new SecretsKeyMissingError(unretiredKeysNamed(rows));
  for (const row of rows) opened[openPrivateKeyFrom(secretsKey, row, row.private_key_sealed).sealedWith] += 1;
  return opened;
}
