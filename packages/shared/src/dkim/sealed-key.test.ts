import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load-config.ts';
import { openSecretFrom } from '../secrets/sealed-secret.ts';
import { parseSecretsKey, secretsKeyOf } from '../secrets/secrets-key.ts';
import { generateDkimKeyPair } from './key-pair.ts';
import { openPrivateKey, SealedKeyError, sealPrivateKey } from './sealed-key.ts';

const name = { domain: 'example.test', selector: 's1' };
const newKey = () => secretsKeyOf(randomBytes(32));
const pem = (await generateDkimKeyPair('ed25519')).privateKeyPem;

describe('sealed DKIM private keys', () => {
  it('open with the key they were sealed with, and the PEM is nowhere in the sealed bytes', () => {
    const key = newKey();
    const sealed = sealPrivateKey(key, name, pem);
    expect(openPrivateKey(key, name, sealed)).toBe(pem);
    const body = pem.split('\n')[1] as string;
    expect(sealed.toString('latin1')).not.toContain(body);
    expect(sealed.toString('base64')).not.toContain(body);
    // A fresh IV every time: sealing twice never gives the same bytes.
    expect(sealPrivateKey(key, name, pem).equals(sealed)).toBe(false);
  });

  it('refuse loudly to open with another key, on another row, or altered', () => {
    const key = newKey();
    const sealed = sealPrivateKey(key, name, pem);
    expect(() => openPrivateKey(newKey(), name, sealed)).toThrow(SealedKeyError);
    expect(() => openPrivateKey(newKey(), name, sealed)).toThrow(/s1\._domainkey\.example\.test cannot be opened with MAIL_SECRETS_KEY: wrong key/);
    expect(() => openPrivateKey(key, { ...name, selector: 's2' }, sealed)).toThrow(SealedKeyError);
    expect(() => openPrivateKey(key, { ...name, domain: 'other.test' }, sealed)).toThrow(SealedKeyError);
    const altered = Buffer.from(sealed);
    altered[altered.length - 1] = (altered[altered.length - 1] as number) ^ 1;
    expect(() => openPrivateKey(key, name, altered)).toThrow(SealedKeyError);
    expect(() => openPrivateKey(key, name, sealed.subarray(0, 20))).toThrow(/not a sealed key/);
  });
});

describe('a rotation of MAIL_SECRETS_KEY (MAIL_SECRETS_KEY_PREVIOUS)', () => {
  it('opens what the previous key sealed, and says so; seals only with the new key', () => {
    const old = newKey();
    const sealedBefore = sealPrivateKey(old, name, pem);
    const rotating = secretsKeyOf(randomBytes(32), old.current);
    expect(openPrivateKey(rotating, name, sealedBefore)).toBe(pem);
    expect(openSecretFrom(rotating, `postern-dkim-v1:${name.domain}:${name.selector}`, sealedBefore).sealedWith).toBe('previous');
    const sealedNow = sealPrivateKey(rotating, name, pem);
    expect(openSecretFrom(rotating, `postern-dkim-v1:${name.domain}:${name.selector}`, sealedNow).sealedWith).toBe('current');
    // Once the previous key is gone, only what the new key sealed opens.
    const after = secretsKeyOf(rotating.current);
    expect(openPrivateKey(after, name, sealedNow)).toBe(pem);
    expect(() => openPrivateKey(after, name, sealedBefore)).toThrow(SealedKeyError);
    // The previous key never opens what the new one sealed.
    expect(() => openPrivateKey(old, name, sealedNow)).toThrow(SealedKeyError);
  });

  it('names both keys when neither opens a value during a rotation, and one when there is one', () => {
    const sealedElsewhere = sealPrivateKey(newKey(), name, pem);
    expect(() => openPrivateKey(secretsKeyOf(randomBytes(32), randomBytes(32)), name, sealedElsewhere)).toThrow(
      /s1\._domainkey\.example\.test cannot be opened with MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS: wrong key/,
    );
    expect(() => openPrivateKey(secretsKeyOf(randomBytes(32)), name, sealedElsewhere)).toThrow(/cannot be opened with MAIL_SECRETS_KEY: wrong key/);
  });
});

describe('MAIL_SECRETS_KEY', () => {
  const minimal = { MAIL_POSTGRES_PRIMARY_DSN: 'postgres://u:p@127.0.0.1:5432/postern', MAIL_SMTP_MODE: 'stub' };

  it('is 32 bytes of base64 (or base64url), and optional', () => {
    const key = randomBytes(32);
    expect(loadConfig({ ...minimal, MAIL_SECRETS_KEY: key.toString('base64') }, 'core').secretsKey?.current.equals(key)).toBe(true);
    expect(loadConfig({ ...minimal, MAIL_SECRETS_KEY: key.toString('base64url') }, 'api').secretsKey?.current.equals(key)).toBe(true);
    expect(loadConfig(minimal, 'core').secretsKey).toBeNull();
  });

  it('refuses any other length or alphabet, without repeating the value', () => {
    const short = randomBytes(16).toString('base64');
    expect(() => loadConfig({ ...minimal, MAIL_SECRETS_KEY: short }, 'core')).toThrow(/MAIL_SECRETS_KEY: decodes to 16 bytes; it must be exactly 32/);
    try {
      loadConfig({ ...minimal, MAIL_SECRETS_KEY: short }, 'core');
    } catch (error) {
      expect((error as Error).message).not.toContain(short);
    }
    expect(parseSecretsKey('not base64 at all!').ok).toBe(false);
    expect(parseSecretsKey(randomBytes(33).toString('base64')).ok).toBe(false);
  });

  it('MAIL_SECRETS_KEY_PREVIOUS is the key a rotation replaces: only beside a new MAIL_SECRETS_KEY, never the same', () => {
    const [next, old] = [randomBytes(32), randomBytes(32)];
    const rotating = loadConfig({ ...minimal, MAIL_SECRETS_KEY: next.toString('base64'), MAIL_SECRETS_KEY_PREVIOUS: old.toString('base64') }, 'core').secretsKey;
    expect(rotating?.current.equals(next)).toBe(true);
    expect(rotating?.previous?.equals(old)).toBe(true);
    expect(loadConfig({ ...minimal, MAIL_SECRETS_KEY: next.toString('base64') }, 'core').secretsKey?.previous).toBeNull();
    expect(() => loadConfig({ ...minimal, MAIL_SECRETS_KEY_PREVIOUS: old.toString('base64') }, 'core')).toThrow(/MAIL_SECRETS_KEY_PREVIOUS: set only beside the new MAIL_SECRETS_KEY/);
    expect(() => loadConfig({ ...minimal, MAIL_SECRETS_KEY: next.toString('base64'), MAIL_SECRETS_KEY_PREVIOUS: next.toString('base64url') }, 'core')).toThrow(
      /MAIL_SECRETS_KEY_PREVIOUS: the same key as MAIL_SECRETS_KEY/,
    );
  });
});
