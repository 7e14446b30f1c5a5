// API tokens: a random 32-byte secret, shown once, stored only as its SHA-256 (a database dump or a
// log line must never be enough to call the API). The `pst_` prefix makes a leaked token easy to
// recognise for secret scanners and for the person reading a config file.
import { createHash, randomBytes } from 'node:crypto';
import { API_PRODUCER_PREFIX, RESERVED_SOURCES } from '../intake/command-fields.ts';

export const TOKEN_PREFIX = 'pst_';

/** Every scope a token may carry; the database CHECK on mail.api_tokens.scopes lists the same. */
export const API_SCOPES = [
  'admin',
  'send',
  // Deliveries of the token's own producer (its `source`): reading them and their dead letters,
  // cancelling and requeueing them. The `:any` forms reach every producer's, the edge's (`smtp`)
  // and Postern's bounces (`postern-dsn`) too: an operator's scopes, not a producer's.
  'deliveries:read',
  'deliveries:write',
  'deliveries:read:any',
  'deliveries:write:any',
  'aliases:read',
  'aliases:write',
  'domains:read',
  'domains:write',
  'suppressions:read',
  'suppressions:write',
  'queue:read',
  // DKIM keys: reading their DNS records, and creating, rotating and retiring them (never their
  // private halves, which no scope exposes).
  'dkim:read',
  'dkim:write',
  // Routes: reading the route table, and setting and deleting routes (where a domain's mail goes).
  'routes:read',
  'routes:write',
  // Nested fields carry the scope of what they expose: whoever may read a delivery does not
  // thereby read the relay's replies, the message's content, or the raw text of refused commands
  // (which can hold login codes).
  'attempts:read',
  'content:read',
  'commands:raw:read',
] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export function isApiScope(value: string): value is ApiScope {
  return (API_SCOPES as readonly string[]).includes(value);
}

/** The scopes whose reach is one producer's unless the token holds their `:any` form. */
export type ProducerScope = 'deliveries:read' | 'deliveries:write';

/** The scope that widens a producer scope to every producer. */
function anyProducer(scope: ProducerScope): ApiScope {
  return `${scope}:any`;
}

/** `admin` implies every other scope; `deliveries:read:any` implies `deliveries:read` (and write alike). */
export function grantsScope(granted: Iterable<string>, required: ApiScope): boolean {
  for (const scope of granted) if (scope === 'admin' || scope === required || scope === `${required}:any`) return true;
  return false;
}

/**
 * Whose deliveries a token reaches with a producer scope it holds: `null` for every producer's
 * (`admin`, or the scope's `:any` form), else the token's own producer alone.
 */
export function producerReach(granted: Iterable<string>, scope: ProducerScope, producer: string): string | null {
  for (const held of granted) if (held === 'admin' || held === anyProducer(scope)) return null;
  return producer;
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

// The stream's rule for `source` (intake/decode-command.ts): a producer is a source the intake accepts.
const PRODUCER_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;

/** The producer a token sends as when it is created without one: its own, private to it. */
export function defaultProducer(tokenName: string): string {
  return `${API_PRODUCER_PREFIX}${tokenName}`;
}

/** Why a token named `tokenName` cannot carry `producer`, or null when it can (the database CHECK
 *  on mail.api_tokens.producer says the same). */
export function producerProblem(tokenName: string, producer: string): string | null {
  if (!PRODUCER_SHAPE.test(producer)) return `producer "${producer}" must be 1-200 of A-Z a-z 0-9 . _ : - (starting with a letter or digit)`;
  if (RESERVED_SOURCES.has(producer)) return `producer "${producer}" is reserved for Postern's own mail`;
  if (producer.startsWith(API_PRODUCER_PREFIX) && producer !== defaultProducer(tokenName)) {
    return `producer "${producer}": "api:<name>" is reserved for the token of that name`;
  }
  return null;
}
