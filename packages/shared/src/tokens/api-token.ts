// API tokens: a random 32-byte secret, shown once, stored only as its SHA-256 (a database dump or a
// log line must never be enough to call the API). The `pst_` prefix makes a leaked token easy to
// recognise for secret scanners and for the person reading a config file.
import { createHash, randomBytes } from 'node:crypto';

export const TOKEN_PREFIX = 'pst_';

/** Every scope a token may carry; the database CHECK on mail.api_tokens.scopes lists the same. */
export const API_SCOPES = [
  'admin',
  'send',
  'deliveries:read',
  'deliveries:write',
  'aliases:read',
  'aliases:write',
  'domains:read',
  'domains:write',
  'suppressions:read',
  'suppressions:write',
  'queue:read',
] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export function isApiScope(value: string): value is ApiScope {
  return (API_SCOPES as readonly string[]).includes(value);
}

/** `admin` implies every other scope. */
export function grantsScope(granted: Iterable<string>, required: ApiScope): boolean {
  for (const scope of granted) if (scope === 'admin' || scope === required) return true;
  return false;
}

// 32 random bytes are 43 base64url characters.
const TOKEN_SHAPE = /^pst_[A-Za-z0-9_-]{43}$/;

export function looksLikeApiToken(text: string): boolean {
  return TOKEN_SHAPE.test(text);
}

/** SHA-256 hex: what mail.api_tokens.token_hash holds. A fast hash is enough for 256 random bits. */
export function hashApiToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function mintApiToken(): { token: string; hash: string } {
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashApiToken(token) };
}
