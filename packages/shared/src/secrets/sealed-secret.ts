// A secret at rest in PostgreSQL (a DKIM private key, a routed relay's password): sealed with
// MAIL_SECRETS_KEY by AES-256-GCM (node:crypto) and bound to what it belongs to (its DKIM key's
// domain and selector, its route's domain and username) as additional authenticated data, so a
// sealed value copied onto another row does not open there. A wrong MAIL_SECRETS_KEY, or a sealed
// value altered in the database, fails loudly (GCM's tag), never yields garbage. A value sealed with
// MAIL_SECRETS_KEY_PREVIOUS (a rotation under way) opens too, and says so (openSecretFrom).
// Layout: version (1 byte, 1) | IV (12 bytes, random per seal) | tag (16 bytes) | ciphertext.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SecretsKey } from './secrets-key.ts';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

/** A sealed value did not open: `version`, not a sealed value of this layout; `tag`, another key
 *  (not the one it was sealed with), another row, or the stored bytes were altered. The caller
 *  names what it was. */
export class SealedSecretError extends Error {
  readonly reason: 'version' | 'tag';
  constructor(reason: 'version' | 'tag') {
    super(reason === 'version' ? 'not a sealed value of this version' : 'wrong key (not the value it was sealed with), or the stored value was altered');
    this.name = 'SealedSecretError';
    this.reason = reason;
  }
}

/** `boundTo` names what the secret belongs to; the same text must be given to open it. */
export function sealSecret(secretsKey: SecretsKey, boundTo: string, plaintext: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', secretsKey.current, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(boundTo, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ciphertext]);
}

function openWith(key: Buffer, boundTo: string, sealed: Buffer): string | null {
  const iv = sealed.subarray(1, 1 + IV_BYTES);
  const tag = sealed.subarray(1 + IV_BYTES, HEADER_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(boundTo, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/** The plaintext, and which key opened it: `previous` is a value `postern secrets reseal` has yet
 *  to seal again. Throws SealedSecretError when neither key does. */
export function openSecretFrom(secretsKey: SecretsKey, boundTo: string, sealed: Buffer): { plaintext: string; sealedWith: 'current' | 'previous' } {
  if (sealed.length <= HEADER_BYTES || sealed[0] !== VERSION) throw new SealedSecretError('version');
  const plaintext = openWith(secretsKey.current, boundTo, sealed);
  if (plaintext !== null) return { plaintext, sealedWith: 'current' };
  const old = secretsKey.previous === null ? null : openWith(secretsKey.previous, boundTo, sealed);
  if (old !== null) return { plaintext: old, sealedWith: 'previous' };
  throw new SealedSecretError('tag');
}

export function openSecret(secretsKey: SecretsKey, boundTo: string, sealed: Buffer): string {
  return openSecretFrom(secretsKey, boundTo, sealed).plaintext;
}
