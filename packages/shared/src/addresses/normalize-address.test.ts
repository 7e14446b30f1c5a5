import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidAddressError, needsSmtpUtf8, normalizeAddress, normalizeDomain, normalizeLocalPart } from './normalize-address.ts';

function reasonOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidAddressError) return error.message;
    throw error;
  }
  throw new Error('expected a refusal');
}

const ATEXT = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-/=?^_`{|}~';
const atom = fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength: 12 });
const dotString = fc.array(atom, { minLength: 1, maxLength: 4 }).map((atoms) => atoms.join('.'));
const ldh = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
const label = fc
  .tuple(ldh, fc.string({ unit: fc.constantFrom(...'abcxyz0189-'), maxLength: 20 }), ldh)
  .map(([first, middle, last]) => `${first}${middle}${last}`)
  .filter((text) => text.slice(2, 4) !== '--');
const topLabel = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'), minLength: 2, maxLength: 8 });
const domain = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), topLabel).map(([labels, top]) => [...labels, top].join('.'));
const asciiAddress = fc.tuple(dotString, domain).map(([local, name]) => `${local}@${name}`);

/** Hostile inputs: valid addresses with something inserted that URL host rules would swallow. */
const HOSTILE_ASCII = ['\r\n', '\r', '\n', '\t', ' ', '\u0000', '%69', '%', '/x', '?', '#', '\\', '[', ']', '"', '<', '>', ',', ';', ':', '@'];
const HOSTILE_UNICODE = ['\u00a0', '\u00ad', '\u200b', '\u200d', '\u2028', '\ufe0f', '\ud800', '\udc00', '\u3002', '\uff0f'];
const insertInto = (inserts: string[]) =>
  fc.tuple(asciiAddress, fc.constantFrom(...inserts), fc.nat()).map(([address, insert, at]) => {
    const index = at % (address.length + 1);
    return `${address.slice(0, index)}${insert}${address.slice(index)}`;
  });
const mangledAscii = insertInto(HOSTILE_ASCII);
const mangled = insertInto([...HOSTILE_ASCII, ...HOSTILE_UNICODE]);

describe('normalizeAddress', () => {
  it('folds case of both parts and drops one trailing root dot', () => {
    expect(normalizeAddress('Info@Example.COM.')).toEqual({ localPart: 'info', domain: 'example.com', address: 'info@example.com' });
  });

  it('turns Unicode domains into A-labels, so both spellings are one address', () => {
    expect(normalizeDomain('Bücher.example')).toBe('xn--bcher-kva.example');
    expect(normalizeAddress('a@xn--bcher-kva.example').address).toBe(normalizeAddress('a@bücher.example').address);
    expect(normalizeAddress('jürgen@bücher.example').address).toBe('jürgen@xn--bcher-kva.example');
  });

  it('puts a UTF-8 local part in NFC (RFC 6532 3.1): a composed and a decomposed spelling are one address', () => {
    const composed = 'j\u00f6rg@example.test';
    const decomposed = 'jo\u0308rg@example.test';
    expect(normalizeAddress(decomposed).address).toBe(composed);
    expect(normalizeAddress('JO\u0308RG@EXAMPLE.TEST').address).toBe(composed);
    expect(normalizeAddress('J\u00d6RG@bu\u0308cher.example.').address).toBe('j\u00f6rg@xn--bcher-kva.example');
    expect(normalizeLocalPart('\u212bngstr\u00f6m')).toBe('\u00e5ngstr\u00f6m'); // ANGSTROM SIGN is canonically Å
    // Measured as the composed form: 22 decomposed ü are 66 octets written, 44 stored.
    expect(normalizeLocalPart('u\u0308'.repeat(22))).toBe('\u00fc'.repeat(22));
    // Not folded: compatibility forms (fullwidth letters), +tags and dots are the receiving domain's to interpret.
    expect(normalizeAddress('\uff4a\uff4f\uff52\uff47@example.test').address).not.toBe('jorg@example.test');
    expect(normalizeAddress('jorg+news@example.test').address).toBe('jorg+news@example.test');
    expect(normalizeAddress('j.org@example.test').address).toBe('j.org@example.test');
  });

  it('refuses what cannot be an address', () => {
    for (const bad of ['', 'no-at-sign', '@example.com', 'a@', 'a b@example.com', 'a..b@example.com', 'a@[127.0.0.1]', 'a@exa_mple.com', '"a b"@example.com', 'a@localhost']) {
      expect(() => normalizeAddress(bad), bad).toThrow(InvalidAddressError);
    }
  });

  it('refuses the measured rewrites, naming the character and the label', () => {
    expect(reasonOf(() => normalizeDomain('example.test/x'))).toMatch(/"\/" \(U\+002F\) in label 2 "test\/x"/);
    expect(reasonOf(() => normalizeDomain('ev\r\nil.test'))).toMatch(/U\+000D in label 1/);
    expect(reasonOf(() => normalizeDomain('ev%69l.test'))).toMatch(/"%" \(U\+0025\) in label 1/);
    expect(reasonOf(() => normalizeDomain('a?b'))).toMatch(/"\?" \(U\+003F\)/);
    expect(reasonOf(() => normalizeDomain('a#b'))).toMatch(/"#" \(U\+0023\)/);
    expect(reasonOf(() => normalizeAddress('x@example.test/x'))).toMatch(/U\+002F/);
    expect(reasonOf(() => normalizeDomain(' example.test'))).toMatch(/U\+0020/);
    // Code points UTS #46 maps to nothing are refused, not dropped.
    expect(reasonOf(() => normalizeDomain('ev\u00adil.test'))).toMatch(/U\+00AD in label 1 .* invisible/);
    expect(reasonOf(() => normalizeDomain('ev\u200bil.test'))).toMatch(/U\+200B/);
  });

  it('keeps the RFC limits: 63-octet labels, 253-octet domains, 64-octet local parts, 254-octet addresses', () => {
    expect(normalizeDomain(`${'a'.repeat(63)}.test`)).toBe(`${'a'.repeat(63)}.test`);
    expect(reasonOf(() => normalizeDomain(`${'a'.repeat(64)}.test`))).toMatch(/label 1 .* is 64 octets; at most 63/);
    // A U-label is measured as the A-label it becomes.
    expect(reasonOf(() => normalizeDomain(`${'ü'.repeat(60)}.test`))).toMatch(/66 octets \(as the A-label xn--/);
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(56)}.test`;
    expect(longest).toHaveLength(253);
    expect(normalizeDomain(longest)).toBe(longest);
    expect(reasonOf(() => normalizeDomain(longest.replace('.test', 'd.test')))).toMatch(/254 octets as A-labels; at most 253/);
    expect(normalizeLocalPart('a'.repeat(64))).toBe('a'.repeat(64));
    expect(reasonOf(() => normalizeLocalPart('a'.repeat(65)))).toMatch(/65 octets; at most 64/);
    expect(reasonOf(() => normalizeLocalPart('ü'.repeat(33)))).toMatch(/66 octets; at most 64/);
    // 22 x U+0130 is 44 octets as given, 66 once lower-cased (i + U+0307 each): measured as stored.
    expect(reasonOf(() => normalizeLocalPart('\u0130'.repeat(22)))).toMatch(/66 octets; at most 64/);
    const domain190 = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.test`;
    expect(normalizeAddress(`${'a'.repeat(63)}@${domain190}`).address).toHaveLength(254);
    expect(reasonOf(() => normalizeAddress(`${'a'.repeat(64)}@${domain190}`))).toMatch(/255 octets; at most 254/);
  });

  it('names misplaced dots, quoting and unsafe characters in the local part', () => {
    expect(reasonOf(() => normalizeLocalPart('.a'))).toMatch(/starts with a dot/);
    expect(reasonOf(() => normalizeLocalPart('a.'))).toMatch(/ends with a dot/);
    expect(reasonOf(() => normalizeLocalPart('a..b'))).toMatch(/two dots in a row/);
    expect(reasonOf(() => normalizeLocalPart('"a"'))).toMatch(/quoted local parts/);
    expect(reasonOf(() => normalizeLocalPart('a\u00a0b'))).toMatch(/U\+00A0 at position 2/);
    expect(reasonOf(() => normalizeLocalPart('a\u202eb'))).toMatch(/U\+202E at position 2/);
  });

  it('knows when a local part needs SMTPUTF8', () => {
    expect(needsSmtpUtf8('jürgen')).toBe(true);
    expect(needsSmtpUtf8('juergen')).toBe(false);
  });
});

describe('normalizeAddress, properties', () => {
  it('round-trips every RFC 5321 ASCII address to itself in lower case, and is idempotent', () => {
    fc.assert(
      fc.property(asciiAddress, (address) => {
        const parsed = normalizeAddress(address);
        expect(parsed.address).toBe(address.toLowerCase());
        expect(normalizeAddress(parsed.address)).toEqual(parsed);
      }),
      { numRuns: 500 },
    );
  });

  it('never rewrites: an ASCII input is refused or kept, up to case and one root dot', () => {
    fc.assert(
      fc.property(fc.oneof(mangledAscii, fc.string({ unit: 'binary-ascii', maxLength: 80 })), (input) => {
        let parsed: ReturnType<typeof normalizeAddress>;
        try {
          parsed = normalizeAddress(input);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidAddressError);
          return;
        }
        expect(parsed.address).toBe(input.toLowerCase().replace(/\.$/, ''));
      }),
      { numRuns: 3000 },
    );
  });

  it('throws nothing but InvalidAddressError on any string, and what it accepts is stable', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), mangled), (input) => {
        try {
          const parsed = normalizeAddress(input);
          expect(normalizeAddress(parsed.address)).toEqual(parsed);
          expect(Buffer.byteLength(parsed.address)).toBeLessThanOrEqual(254);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidAddressError);
          expect((error as InvalidAddressError).reason.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts a label exactly when it has at most 63 octets, a local part at most 64', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1, max: 80 }), (labelLength, localLength) => {
        const input = `${'l'.repeat(localLength)}@${'d'.repeat(labelLength)}.test`;
        const accepted = (() => {
          try {
            normalizeAddress(input);
            return true;
          } catch {
            return false;
          }
        })();
        expect(accepted).toBe(labelLength <= 63 && localLength <= 64);
      }),
    );
  });
});
