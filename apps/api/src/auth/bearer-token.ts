// Bearer authentication, done at the HTTP layer before GraphQL parses anything: a request without a
// valid, unrevoked token is answered 401 and never reaches a resolver. Scopes are checked later,
// per field (scope-auth), where the answer can name the missing scope.
import { authenticateApiToken, type Queryable } from '@postern/shared';
import type { Principal } from '../context.ts';

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 section 2.1), or null. */
export function bearerTokenOf(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer[ ]+([A-Za-z0-9._~+/-]+=*)\s*$/i.exec(header);
  return match?.[1] ?? null;
}

export async function authenticateBearer(db: Queryable, header: string | undefined): Promise<Principal | null> {
  const token = bearerTokenOf(header);
  if (!token) return null;
  const record = await authenticateApiToken(db, token);
  if (!record) return null;
  return { tokenId: record.id, tokenName: record.name, scopes: record.scopes, producer: record.producer };
}
