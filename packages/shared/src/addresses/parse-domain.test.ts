import fc from 'fast-check';
import tr46 from 'tr46';
import { describe, expect, it } from 'vitest';
import { InvalidAddressError } from './invalid-address-error.ts';
import { parseDomain } from './parse-domain.ts';

const unicodeLabel = fc.string({ unit: fc.constantFrom(...'abcxyz019-äöüßéñабв日本語ÄÖÜ'), minLength: 1, maxLength: 30 });
const unicodeDomain = fc.tuple(fc.array(unicodeLabel, { minLength: 1, maxLength: 3 }), fc.constantFrom('test', 'example', 'de')).map(([labels, top]) =>
  [...labels, top].join('.'),
);

describe('parseDomain, properties', () => {
  it('maps a U-label name to A-labels exactly as UTS #46 does, or refuses it', () => {
    fc.assert(
      fc.property(unicodeDomain, (name) => {
        let ascii: string;
        try {
          ascii = parseDomain(name);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidAddressError);
          return;
        }
        // The stored form is UTS #46's own answer, stable, ASCII, and within the DNS limits.
        expect(ascii).toBe(tr46.toASCII(name, { checkHyphens: true, checkBidi: true, checkJoiners: true, useSTD3ASCIIRules: true, verifyDNSLength: true }));
        expect(parseDomain(ascii)).toBe(ascii);
        expect(ascii).toMatch(/^[a-z0-9.-]+$/);
        expect(ascii.length).toBeLessThanOrEqual(253);
        for (const label of ascii.split('.')) expect(label.length).toBeLessThanOrEqual(63);
      }),
      { numRuns: 1000 },
    );
  });

  it('U-label and A-label spellings are one name', () => {
    expect(parseDomain('Bücher.Example')).toBe(parseDomain('XN--BCHER-KVA.example'));
    expect(parseDomain('faß.de')).toBe('xn--fa-hia.de');
  });
});
