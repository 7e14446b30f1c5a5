// Creating, rotating and retiring DKIM keys (the API's mutations), one implementation for every
// caller. A domain signs with at most one key at a time (its `active` key); a rotation makes a new
// key active and keeps the one it replaces as `superseded`, its record still published, until the
// operator retires it; retiring destroys the private key (docs/deploy.md, "DKIM").
// New keys are created `active` when the domain has none, else `pending`: a pending key's record
// can be published and seen in DNS before a rotation makes it sign, so no mail is ever signed with
// a key verifiers cannot find yet.
import pg from 'pg';
import { InvalidAddressError, normalizeDomain } from '../addresses/normalize-address.ts';
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { withTransaction } from '../db/pool.ts';
import { fillMark } from '../db/sql-marks.ts';
import { type SecretsKey, SecretsKeyMissingError } from '../secrets/secrets-key.ts';
import { DKIM_KEY_TYPES, type DkimKeyType, generateDkimKeyPair } from './key-pair.ts';
import { sealPrivateKey } from './sealed-key.ts';

export const DKIM_KEY_STATUSES = ['pending', 'active', 'superseded', 'retired'] as const;
export type DkimKeyStatus = (typeof DKIM_KEY_STATUSES)[number];

/** A key as the API shows it: never its private half, sealed or not. */
export interface DkimKeyRecord {
  id: string;
  domain: string;
  selector: string;
  keyType: DkimKeyType;
  /** The DNS record's p= value. */
  publicKey: string;
  status: DkimKeyStatus;
  createdAt: Date;
  activatedAt: Date | null;
  supersededAt: Date | null;
  retiredAt: Date | null;
}

/** DkimKeyRecord's columns of `mail.dkim_keys dk`, for every statement that returns keys. */
export const DKIM_KEY_COLUMNS = `dk.id::text AS id, dk.domain, dk.selector, dk.key_type AS "keyType", dk.public_key AS "publicKey",
       dk.status, dk.created_at AS "createdAt", dk.activated_at AS "activatedAt", dk.superseded_at AS "supersededAt",
       dk.retired_at AS "retiredAt"`;

function withColumns(template: string): string {
  return fillMark(template, 'DKIM_KEY_COLUMNS', DKIM_KEY_COLUMNS);
}

/** The input names its field (`domain`, `selector`, `keyType`) and what is wrong with it. */
export class DkimKeyInputError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'DkimKeyInputError';
    this.field = field;
  }
}

/** The state of the domain's keys refuses the change (selector taken, an active key exists, ...). */
export class DkimKeyConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DkimKeyConflictError';
  }
}

export class DkimKeyNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DkimKeyNotFoundError';
  }
}

/** A selector is one or more DNS labels (RFC 6376 3.1), kept in lower case. */
const SELECTOR = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const MAX_SELECTOR_CHARS = 63;

export function dkimDomain(input: string): string {
  try {
    return normalizeDomain(input);
  } catch (error) {
    if (error instanceof InvalidAddressError) throw new DkimKeyInputError('domain', error.message);
    throw error;
  }
}

export function dkimSelector(input: string): string {
  const selector = input.toLowerCase();
  if (selector.length === 0 || selector.length > MAX_SELECTOR_CHARS || !SELECTOR.test(selector)) {
    throw new DkimKeyInputError(
      'selector',
      `selector ${JSON.stringify(input.slice(0, 80))} must be 1-${MAX_SELECTOR_CHARS} characters of DNS labels (a-z 0-9 -, dot-separated)`,
    );
  }
  return selector;
}

function dkimKeyType(input: string): DkimKeyType {
  if ((DKIM_KEY_TYPES as readonly string[]).includes(input)) return input as DkimKeyType;
  throw new DkimKeyInputError('keyType', `key type must be one of ${DKIM_KEY_TYPES.join(', ')}`);
}

export interface NewDkimKey {
  domain: string;
  selector: string;
  keyType: string;
}

const INSERT_KEY_SQL = withColumns(`
INSERT INTO mail.dkim_keys AS dk (domain, selector, key_type, public_key, private_key_sealed, status, activated_at)
SELECT $1, $2, $3, $4, $5, s.status, CASE WHEN s.status = 'active' THEN now() END
  FROM (SELECT CASE WHEN $6::boolean OR NOT EXISTS (SELECT 1 FROM mail.dkim_keys WHERE domain = $1 AND status = 'active')
                    THEN 'active' ELSE 'pending' END AS status) s
RETURNING /*DKIM_KEY_COLUMNS*/`);

function uniqueViolation(error: unknown): string | null {
  const failure = error as { code?: unknown; constraint?: unknown };
  return failure.code === '23505' ? String(failure.constraint ?? '') : null;
}

/** `work` in a transaction: the pool's own, or the one the caller's client is already in. */
function inTransaction<T>(db: Queryable, work: (tx: Queryable) => Promise<T>): Promise<T> {
  return db instanceof pg.Pool ? withTransaction(db, work) : work(db);
}

async function insertKey(db: Queryable, secretsKey: SecretsKey, key: { domain: string; selector: string; keyType: DkimKeyType }, active: boolean) {
  const pair = await generateDkimKeyPair(key.keyType);
  const sealed = sealPrivateKey(secretsKey, key, pair.privateKeyPem);
  try {
    const result = await db.query<DkimKeyRecord>(INSERT_KEY_SQL, [key.domain, key.selector, key.keyType, pair.publicKey, sealed, active]);
    return result.rows[0] as DkimKeyRecord;
  } catch (error) {
    const constraint = uniqueViolation(error);
    if (constraint === 'dkim_keys_domain_selector_key') {
      throw new DkimKeyConflictError(
        `selector "${key.selector}" has been used for ${key.domain} already; a selector is never reused (resolvers may still cache its record), pick another`,
      );
    }
    if (constraint === 'dkim_keys_one_active_idx') {
      throw new DkimKeyConflictError(`another key of ${key.domain} became active at the same moment; list the domain's keys and try again`);
    }
    throw error;
  }
}

/** A new key for a domain: `active` when the domain has none, otherwise `pending` (publish its
 *  record, then rotate to it). The private key is sealed with `secretsKey` before it is stored. */
export async function createDkimKey(db: Queryable, secretsKey: SecretsKey | null, input: NewDkimKey): Promise<DkimKeyRecord> {
  const key = { domain: dkimDomain(input.domain), selector: dkimSelector(input.selector), keyType: dkimKeyType(input.keyType) };
  if (!secretsKey) throw new SecretsKeyMissingError('creating a DKIM key');
  return insertKey(db, secretsKey, key, false);
}

const LOCK_DOMAIN_KEYS_SQL = withColumns(`
SELECT /*DKIM_KEY_COLUMNS*/ FROM mail.dkim_keys dk WHERE dk.domain = $1 ORDER BY dk.id FOR UPDATE`);

const SUPERSEDE_SQL = withColumns(`
UPDATE mail.dkim_keys dk SET status = 'superseded', superseded_at = now()
 WHERE dk.id = $1::bigint AND dk.status = 'active'
RETURNING /*DKIM_KEY_COLUMNS*/`);

const ACTIVATE_PENDING_SQL = withColumns(`
UPDATE mail.dkim_keys dk SET status = 'active', activated_at = now()
 WHERE dk.id = $1::bigint AND dk.status = 'pending'
RETURNING /*DKIM_KEY_COLUMNS*/`);

export interface DkimRotation {
  /** The key that signs from now on. */
  active: DkimKeyRecord;
  /** The key it replaced: signs no more; keep its record until it is retired. */
  superseded: DkimKeyRecord;
}

/** The domain's active key is replaced by the key with `selector`: its pending key of that
 *  selector, or a new one of `keyType` (default: the replaced key's type). */
export async function rotateDkimKey(
  db: Queryable,
  secretsKey: SecretsKey | null,
  input: { domain: string; selector: string; keyType?: string | null },
): Promise<DkimRotation> {
  const domain = dkimDomain(input.domain);
  const selector = dkimSelector(input.selector);
  const requestedType = input.keyType ? dkimKeyType(input.keyType) : null;
  return inTransaction(db, async (tx) => {
    // Every key of the domain, locked: two rotations of one domain run one after the other.
    const { rows } = await tx.query<DkimKeyRecord>(LOCK_DOMAIN_KEYS_SQL, [domain]);
    const current = rows.find((row) => row.status === 'active');
    if (!current) throw new DkimKeyNotFoundError(`${domain} has no active DKIM key to rotate; create one with createDkimKey`);
    const named = rows.find((row) => row.selector === selector);
    if (named && named.status !== 'pending') {
      throw new DkimKeyConflictError(`selector "${selector}" of ${domain} is ${named.status}; rotate to a pending key or a new selector`);
    }
    if (named && requestedType && named.keyType !== requestedType) {
      throw new DkimKeyInputError('keyType', `the pending key "${selector}" of ${domain} is ${named.keyType}, not ${requestedType}`);
    }
    if (!named && !secretsKey) throw new SecretsKeyMissingError('creating a DKIM key');
    const superseded = (await tx.query<DkimKeyRecord>(SUPERSEDE_SQL, [current.id])).rows[0] as DkimKeyRecord;
    const active = named
      ? ((await tx.query<DkimKeyRecord>(ACTIVATE_PENDING_SQL, [named.id])).rows[0] as DkimKeyRecord)
      : await insertKey(tx, secretsKey as SecretsKey, { domain, selector, keyType: requestedType ?? current.keyType }, true);
    return { active, superseded };
  });
}

const RETIRE_SQL = withColumns(`
UPDATE mail.dkim_keys dk SET status = 'retired', retired_at = now(), private_key_sealed = NULL
 WHERE dk.domain = $1 AND dk.selector = $2 AND dk.status <> 'retired'
RETURNING /*DKIM_KEY_COLUMNS*/`);

const KEY_BY_NAME_SQL = withColumns(`
SELECT /*DKIM_KEY_COLUMNS*/ FROM mail.dkim_keys dk WHERE dk.domain = $1 AND dk.selector = $2`);

/** The key signs no more and its private half is destroyed; its record can leave DNS. Retiring
 *  the active key leaves the domain's mail unsigned until another key is created. */
export async function retireDkimKey(db: Queryable, input: { domain: string; selector: string }): Promise<DkimKeyRecord> {
  const domain = dkimDomain(input.domain);
  const selector = dkimSelector(input.selector);
  const retired = (await db.query<DkimKeyRecord>(RETIRE_SQL, [domain, selector])).rows[0];
  if (retired) return retired;
  const existing = (await db.query<DkimKeyRecord>(KEY_BY_NAME_SQL, [domain, selector])).rows[0];
  if (existing) throw new DkimKeyConflictError(`the DKIM key "${selector}" of ${domain} is retired already`);
  throw new DkimKeyNotFoundError(`${domain} has no DKIM key with selector "${selector}"`);
}
