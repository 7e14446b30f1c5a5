// MAIL_SECRETS_KEY: the one key that seals secrets Postern keeps in PostgreSQL (DKIM private keys,
// routed relays' passwords: sealed-secret.ts), so that a database dump or backup alone is not
// enough to sign mail as the operator's domains or to log in to their relays.
// 32 random bytes, base64 (`openssl rand -base64 32`). Optional in the environment: it is needed
// only once a DKIM key exists or is created, or a route gets credentials, and then by the API and
// the engine alike, with the same value (docs/deploy.md, "DKIM").
// During a rotation (docs/deploy.md, "Rotating MAIL_SECRETS_KEY") MAIL_SECRETS_KEY_PREVIOUS is the
// key being replaced: values sealed with it still open, everything new is sealed with the new key,
// and `postern secrets reseal` seals the old values again with the new key (reseal-secrets.ts).
import type { Parsed } from '../config/parse-values.ts';

export const SECRETS_KEY_BYTES = 32;

/** The keys, held as bytes; never logged, never in an answer. */
export interface SecretsKey {
  /** MAIL_SECRETS_KEY: seals every new value, and opens first. */
  readonly current: Buffer;
  /** MAIL_SECRETS_KEY_PREVIOUS, during a rotation only: opens the values sealed before it. */
  readonly previous: Buffer | null;
}

export function secretsKeyOf(current: Buffer, previous: Buffer | null = null): SecretsKey {
  return { current, previous };
}

/** The keys a value was tried with, as a refusal names them: both during a rotation. */
export function keysTried(secretsKey: SecretsKey): string {
  return secretsKey.previous === null ? 'MAIL_SECRETS_KEY' : 'MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS';
}

/** base64 (or base64url) of exactly 32 bytes; anything else is refused rather than padded or cut. */
export function parseSecretsKey(text: string): Parsed<Buffer> {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    return { ok: false, problem: `must be ${SECRETS_KEY_BYTES} random bytes in base64 (openssl rand -base64 32)` };
  }
  const bytes = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
  if (bytes.length !== SECRETS_KEY_BYTES) {
    return { ok: false, problem: `decodes to ${bytes.length} bytes; it must be exactly ${SECRETS_KEY_BYTES} (openssl rand -base64 32)` };
  }
  return { ok: true, value: bytes };
}

/** A DKIM key is to be created or used, and MAIL_SECRETS_KEY is not set. */
export class SecretsKeyMissingError extends Error {
  constructor(what: string) {
    super(`MAIL_SECRETS_KEY is not set: ${what} needs it (32 random bytes in base64, the same value for the API and every engine)`);
    this.name = 'SecretsKeyMissingError';
  }
}
