// A DKIM private key at rest: sealed with MAIL_SECRETS_KEY by AES-256-GCM (node:crypto), bound to
// its domain and selector as additional authenticated data, so a sealed key copied onto another
// row does not open there. A wrong MAIL_SECRETS_KEY, or a sealed value altered in the database,
// fails loudly (GCM's tag), never signs with garbage.
// Layout: version (1 byte, 1) | IV (12 bytes, random per seal) | tag (16 bytes) | ciphertext.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SecretsKey } from './secrets-key.ts';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

export interface KeyName {
  domain: string;
  selector: string;
}

/** MAIL_SECRETS_KEY does not open a sealed key: another key, or the row was altered. */
export class SealedKeyError extends Error {
  constructor(name: KeyName, why: string) {
    super(`the DKIM key ${name.selector}._domainkey.${name.domain} cannot be opened with MAIL_SECRETS_KEY: ${why}`);
    this.name = 'SealedKeyError';
  }
}

function boundTo(name: KeyName): Buffer {
  return Buffer.from(`postern-dkim-v${VERSION}:${name.domain}:${name.selector}`, 'utf8');
}

export function sealPrivateKey(secretsKey: SecretsKey, name: KeyName, privateKeyPem: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', secretsKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(boundTo(name));
  const ciphertext = Buffer.concat([cipher.update(privateKeyPem, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ciphertext]);
}

export function openPrivateKey(secretsKey: SecretsKey, name: KeyName, sealed: Buffer): string {
  if (sealed.length <= HEADER_BYTES || sealed[0] !== VERSION) throw new SealedKeyError(name, 'not a sealed key of this version');
  const iv = sealed.subarray(1, 1 + IV_BYTES);
  const tag = sealed.subarray(1 + IV_BYTES, HEADER_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', secretsKey, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(boundTo(name));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SealedKeyError(name, 'wrong key (not the value it was created with), or the stored key was altered');
  }
}
