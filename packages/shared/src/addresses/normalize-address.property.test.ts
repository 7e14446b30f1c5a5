// The fast paths for plain ASCII addresses (plainAsciiAddress) and domains (plainAsciiDomain) must
// give exactly what the full parse gives: the same normal form where they answer, and no answer (so
// the full parse decides, refusal and reason included) anywhere the full parse refuses. Checked
// against the full parse over generated addresses and domains, both at every length limit, encoded
// and reserved labels, hostile insertions and arbitrary strings.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeAddress, normalizeDomain, parseAddressInFull, plainAsciiAddress } from './normalize-address.ts';
import { parseDomainInFull, plainAsciiDomain } from './parse-domain.ts';

type Outcome = { value: unknown } | { refused: string };

function outcome(run: () => unknown): Outcome {
  try {
    return { value: run() };
  } catch (error) {
    return { refused: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
}

/** The property: the fast path answers only what the full parse answers, and identically. */
function agrees(input: string): void {
  const fast = plainAsciiAddress(input);
  const full = outcome(() => parseAddressInFull(input));
  if (fast !== null) expect(full).toEqual({ value: fast });
  expect(outcome(() => normalizeAddress(input))).toEqual(full);
}

/** The same property for a domain alone. */
function domainAgrees(input: string): void {
  const fast = plainAsciiDomain(input);
  const full = outcome(() => parseDomainInFull(input));
  if (fast !== null) expect(full).toEqual({ value: fast });
  expect(outcome(() => normalizeDomain(input))).toEqual(full);
}

const ATEXT = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-/=?^_`{|}~';
const LDH = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
// size 'max': lengths up to maxLength, not fast-check's small default (about 10 characters).
const atom = (maxLength: number) => fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength, size: 'max' });
const localPart = fc.oneof(
  fc.array(fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }).map((atoms) => atoms.join('.')),
  // around the 64-octet limit
  fc.array(atom(70), { minLength: 1, maxLength: 2 }).map((atoms) => atoms.join('.')),
);
const label = fc.oneof(
  fc
    .tuple(fc.constantFrom(...LDH), fc.string({ unit: fc.constantFrom(...'abcXYZ0189-'), maxLength: 20 }), fc.constantFrom(...LDH))
    .map(([first, middle, last]) => `${first}${middle}${last}`),
  fc.constantFrom(...LDH),
  // around the 63-octet label limit
  fc.string({ unit: fc.constantFrom(...'abz09-'), minLength: 58, maxLength: 66, size: 'max' }),
  // encoded and reserved labels: valid and broken punycode, "--" in the 3rd and 4th characters
  fc.constantFrom('xn--bcher-kva', 'XN--BCHER-KVA', 'xn--mnchen-3ya', 'xn--zz', 'xn--', 'xn--a', 'ab--cd', 'a--b', '-ab', 'ab-', '--', 'xn--80ak6aa92e'),
  // numeric and one-character labels (a top-level one is refused)
  fc.constantFrom('1', '42', '0', 'x'),
);
const domain = fc
  .tuple(fc.array(label, { minLength: 0, maxLength: 5 }), label, fc.boolean())
  .map(([labels, top, rootDot]) => `${[...labels, top].join('.')}${rootDot ? '.' : ''}`);
const address = fc.tuple(localPart, domain).map(([local, name]) => `${local}@${name}`);
/** Near the 253-character domain and 254-octet address limits. */
const longAddress = fc
  .tuple(atom(64), fc.array(fc.string({ unit: fc.constantFrom(...'abc'), minLength: 1, maxLength: 63, size: 'max' }), { minLength: 3, maxLength: 6 }))
  .map(([local, labels]) => `${local}@${labels.join('.')}.test`);

const HOSTILE = [
  '\r\n', '\r', '\n', '\t', ' ', '\u0000', '\u007f', '%69', '%', '/x', '?', '#', '\\', '[', ']', '"', '<', '>', ',', ';', ':', '@', '.', '..', '-',
  '\u00a0', '\u00ad', '\u00df', '\u0130', '\u212a', '\u200b', '\u200d', '\u2028', '\ufe0f', '\ud800', '\udc00', '\u3002', '\uff0e', '\uff0f', 'ü', 'К', '\u05d0',
];
const hostile = fc.tuple(address, fc.array(fc.tuple(fc.constantFrom(...HOSTILE), fc.nat()), { minLength: 1, maxLength: 3 })).map(([text, inserts]) =>
  inserts.reduce((acc, [insert, at]) => {
    const index = at % (acc.length + 1);
    return `${acc.slice(0, index)}${insert}${acc.slice(index)}`;
  }, text),
);
/** Near the 253-character domain limit (and past it), with and without the root dot. */
const longDomain = fc
  .tuple(fc.array(fc.string({ unit: fc.constantFrom(...'abc'), minLength: 1, maxLength: 63, size: 'max' }), { minLength: 3, maxLength: 5 }), fc.boolean())
  .map(([labels, rootDot]) => `${labels.join('.')}.test${rootDot ? '.' : ''}`);
const hostileDomain = fc.tuple(domain, fc.array(fc.tuple(fc.constantFrom(...HOSTILE), fc.nat()), { minLength: 1, maxLength: 3 })).map(([text, inserts]) =>
  inserts.reduce((acc, [insert, at]) => {
    const index = at % (acc.length + 1);
    return `${acc.slice(0, index)}${insert}${acc.slice(index)}`;
  }, text),
);
const DENSE = [...'aZ09.-@_+"[]\\ ü\u00ad', 'xn--', '\u212a', '\r\n'];
const dense = fc.array(fc.constantFrom(...DENSE), { maxLength: 30 }).map((parts) => parts.join(''));

describe('plainAsciiAddress, the fast path of normalizeAddress', () => {
  it('answers exactly as the full parse on generated addresses', () => {
    fc.assert(fc.property(address, agrees), { numRuns: 3000 });
  }, 60_000);

  it('answers exactly as the full parse at the length limits', () => {
    // The full parse of a 250-character address takes milliseconds (nearley): fewer runs, more time.
    fc.assert(fc.property(longAddress, agrees), { numRuns: 300 });
  }, 60_000);

  it('answers exactly as the full parse on hostile insertions and arbitrary strings', () => {
    fc.assert(fc.property(fc.oneof(hostile, dense, fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 })), agrees), {
      numRuns: 4000,
    });
  }, 60_000);

  it('takes the plain addresses it is for', () => {
    for (const input of ['user@example.test', 'First.Last+tag@Mail.Example.COM.', "o'neil@a-b.example", 'x@sub.xn-a.test'.replace('xn-a', 'xna')]) {
      expect(plainAsciiAddress(input), input).not.toBeNull();
    }
    for (const input of ['user@xn--bcher-kva.example', 'user@ab--cd.example', 'user@example.123', 'user@localhost', 'a..b@example.test', '"q"@example.test']) {
      expect(plainAsciiAddress(input), input).toBeNull();
    }
  });
});

describe('plainAsciiDomain, the fast path of parseDomain', () => {
  it('answers exactly as the full parse on generated domains, at the length limits, on hostile insertions and arbitrary strings', () => {
    fc.assert(fc.property(domain, domainAgrees), { numRuns: 3000 });
    fc.assert(fc.property(longDomain, domainAgrees), { numRuns: 500 });
    fc.assert(fc.property(fc.oneof(hostileDomain, dense, fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 })), domainAgrees), {
      numRuns: 4000,
    });
  }, 60_000);

  it('takes the plain domains it is for', () => {
    for (const input of ['example.test', 'Mail.Example.COM.', 'a-b.example', '123.example', `${'a'.repeat(63)}.test`]) {
      expect(plainAsciiDomain(input), input).not.toBeNull();
    }
    for (const input of ['xn--bcher-kva.example', 'ab--cd.example', 'example.123', 'localhost', 'a..b', 'ex_ample.test', `${'a'.repeat(64)}.test`, 'example.test..']) {
      expect(plainAsciiDomain(input), input).toBeNull();
    }
  });
});

describe('canonically equivalent spellings (NFC, NFD) of an address', () => {
  // Letters with marks, in any mix of composed and decomposed forms, upper and lower case.
  const unicodeLocal = fc.string({ unit: fc.constantFrom(...'aoAOuUeE\u00f6\u00d6\u00fc\u00dc\u00e9\u00c9\u00e5\u00c5\u212b\u1e9e\u00df\u0130i\u0391\u03a3\u03c3'), minLength: 1, maxLength: 20 });

  it('are one address, or are refused alike', () => {
    fc.assert(
      fc.property(unicodeLocal, (local) => {
        const spellings = ['NFC', 'NFD'].map((form) => outcome(() => normalizeAddress(`${local.normalize(form as 'NFC' | 'NFD')}@b\u00fccher.example`)));
        expect(spellings[1]).toEqual(spellings[0]);
        const [first] = spellings;
        if (first && 'value' in first) {
          const { localPart } = first.value as { localPart: string };
          expect(localPart.normalize('NFC')).toBe(localPart);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
