// A DKIM private key at rest: sealed with MAIL_SECRETS_KEY (secrets/sealed-secret.ts), bound to its
// domain and selector, so a sealed key copied onto another row does not open there.
import { openSecretFrom, SealedSecretError, sealSecret } from '../secrets/sealed-secret.ts';
import { keysTried, type SecretsKey } from '../secrets/secrets-key.ts';

export interface KeyName {
  domain: string;
  selector: string;
}

/** No configured key opens a sealed key: another key, or the row was altered. `keys` names the
 *  keys tried (keysTried). */
export class SealedKeyError extends Error {
  constructor(name: KeyName, why: string, keys = 'MAIL_SECRETS_KEY') {
    super(`the DKIM key ${name.selector}._domainkey.${name.domain} cannot be opened with ${keys}: ${why}`);
    this.name = 'SealedKeyError';
  }
}

/** What a DKIM key's sealed value is bound to (additional authenticated data). */
export function dkimKeyBoundTo(name: KeyName): string {
  return `postern-dkim-v1:${name.domain}:${name.selector}`;
}

export function sealPrivateKey(secretsKey: SecretsKey, name: KeyName, privateKeyPem: string): Buffer {
  return sealSecret(secretsKey, dkimKeyBoundTo(name), privateKeyPem);
}

export function openPrivateKey(secretsKey: SecretsKey, name: KeyName, sealed: Buffer): string {
  return openPrivateKeyFrom(secretsKey, name, sealed).privateKeyPem;
}

/** The PEM, and which key opened it: `previous` during a rotation of MAIL_SECRETS_KEY, until
 *  `postern secrets reseal` seals it again. Throws SealedKeyError when neither key does. */
export function openPrivateKeyFrom(secretsKey: SecretsKey, name: KeyName, sealed: Buffer): { privateKeyPem: string; sealedWith: 'current' | 'previous' } {
  try {
    const opened = openSecretFrom(secretsKey, dkimKeyBoundTo(name), sealed);
    return { privateKeyPem: opened.plaintext, sealedWith: opened.sealedWith };
  } catch (error) {
    if (error instanceof SealedSecretError) {
      const why = error.reason === 'version' ? 'not a sealed key of this version' : 'wrong key (not the value it was created with), or the stored key was altered';
      throw new SealedKeyError(name, why, keysTried(secretsKey));
    }
    throw error;
  }
}
