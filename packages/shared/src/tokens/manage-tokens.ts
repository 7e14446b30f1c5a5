// Creating, revoking and checking API tokens: one implementation for the operator CLI (`postern
// token ...`), the API's development token and the API's bearer authentication.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { isWriteRefusedDbError } from '../db/db-errors.ts';
import { type ApiScope, defaultProducer, hashApiToken, isApiScope, looksLikeApiToken, mintApiToken, producerProblem } from './api-token.ts';

export interface ApiTokenRecord {
  id: string;
  name: string;
  scopes: ApiScope[];
  /** The one `source` this token sends as (sendEmail); "api:<name>" unless created with another. */
  producer: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export class ApiTokenInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ApiTokenInputError';
  }
}

const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Mints a token and stores its hash; the returned `token` is the only time it exists in clear. */
export async function createApiToken(
  db: Queryable,
  input: { name: string; scopes: readonly string[]; producer?: string | null },
): Promise<{ token: string; record: ApiTokenRecord }> {
  if (!TOKEN_NAME.test(input.name)) {
    throw new ApiTokenInputError(`token name "${input.name}" must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
  }
  if (input.scopes.length === 0) throw new ApiTokenInputError('a token needs at least one scope');
  const unknown = input.scopes.filter((scope) => !isApiScope(scope));
  if (unknown.length > 0) throw new ApiTokenInputError(`unknown scope(s): ${unknown.join(', ')}`);
  const scopes = [...new Set(input.scopes)];
  const producer = input.producer ?? defaultProducer(input.name);
  const problem = producerProblem(input.name, producer);
  if (problem) throw new ApiTokenInputError(problem);
  const { token, hash } = mintApiToken();
  try {
    const result = await db.query<ApiTokenRecord>(
      `INSERT INTO mail.api_tokens (name, token_hash, scopes, producer) VALUES ($1, $2, $3::text[], $4)
       RETURNING id::text AS id, name, scopes, producer, created_at AS "createdAt", last_used_at AS "lastUsedAt",
                 revoked_at AS "revokedAt"`,
      [input.name, hash, scopes, producer],
    );
    return { token, record: result.rows[0] as ApiTokenRecord };
  } catch (error) {
    if ((error as { code?: unknown }).code === '23505') {
      throw new ApiTokenInputError(`a token named "${input.name}" already exists`);
    }
    throw error;
  }
}

/** Marks the token revoked; it stops working on the next request. False: no such active token. */
export async function revokeApiToken(db: Queryable, name: string): Promise<boolean> {
  const result = await db.query('UPDATE mail.api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL', [
    name,
  ]);
  return (result.rowCount ?? 0) > 0;
}

export async function listApiTokens(db: Queryable): Promise<ApiTokenRecord[]> {
  const result = await db.query<ApiTokenRecord>(
    `SELECT id::text AS id, name, scopes, producer, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
       FROM mail.api_tokens ORDER BY created_at, id`,
  );
  return result.rows;
}

const AUTHENTICATE_AND_TOUCH_SQL = `
WITH found AS (SELECT * FROM mail.api_tokens WHERE token_hash = $1 AND revoked_at IS NULL),
     touched AS (UPDATE mail.api_tokens t SET last_used_at = now() FROM found
                  WHERE t.id = found.id AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute'))
SELECT id::text AS id, name, scopes, producer, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
  FROM found`;

const AUTHENTICATE_SQL = `
SELECT id::text AS id, name, scopes, producer, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
  FROM mail.api_tokens WHERE token_hash = $1 AND revoked_at IS NULL`;

/** The active (not revoked) token with this value, or null. Records last use, at most once a minute
 *  (an UPDATE on every request would write a row version per request). Recording it is a write,
 *  and a server that takes none now (its disk full, read-only: isWriteRefusedDbError) still knows
 *  who the token is: the lookup is made again without it. Failing it made every request of the
 *  token 503 while the disk was full, an operator's look at the queue too (e2e/faults/postgres-disk-full). */
export async function authenticateApiToken(db: Queryable, token: string): Promise<ApiTokenRecord | null> {
  if (!looksLikeApiToken(token)) return null;
  const hash = hashApiToken(token);
  try {
    return (await db.query<ApiTokenRecord>(AUTHENTICATE_AND_TOUCH_SQL, [hash])).rows[0] ?? null;
  } catch (error) {
    if (!isWriteRefusedDbError(error)) throw error;
    return (await db.query<ApiTokenRecord>(AUTHENTICATE_SQL, [hash])).rows[0] ?? null;
  }
}
