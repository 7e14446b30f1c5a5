import { describe, expect, it } from 'vitest';
import { InvalidAddressError, needsSmtpUtf8, normalizeAddress, normalizeDomain } from './normalize-address.ts';

describe('normalizeAddress', () => {
  it('folds case of both parts and strips a trailing dot', () => {
    expect(normalizeAddress('Info@Example.COM.')).toEqual({ localPart: 'info', domain: 'example.com', address: 'info@example.com' });
  });

  it('turns Unicode domains into punycode, so both spellings are one address', () => {
    expect(normalizeDomain('Bücher.example')).toBe('xn--bcher-kva.example');
    expect(normalizeAddress('a@xn--bcher-kva.example').address).toBe(normalizeAddress('a@bücher.example').address);
  });

  it('refuses what cannot be an address', () => {
    for (const bad of ['', 'no-at-sign', '@example.com', 'a@', 'a b@example.com', 'a..b@example.com', 'a@[127.0.0.1]', 'a@exa_mple.com']) {
      expect(() => normalizeAddress(bad), bad).toThrow(InvalidAddressError);
    }
  });

  it('knows when a local part needs SMTPUTF8', () => {
    expect(needsSmtpUtf8('jürgen')).toBe(true);
    expect(needsSmtpUtf8('juergen')).toBe(false);
  });
});
