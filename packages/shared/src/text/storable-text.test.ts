import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { storableText, storableTextFromBytes, textProblem, truncationMarker } from './storable-text.ts';

describe('storableText', () => {
  it('marks NUL, controls and lone surrogates instead of dropping them', () => {
    expect(storableText('a\u0000b')).toBe('a\u2400b');
    expect(storableText('a\u0007b')).toBe('a\ufffdb');
    expect(storableText('a\ud800b')).toBe('a\ufffdb');
    expect(storableText('a\r\nb\tc')).toBe('a  b c');
    expect(storableText('a\r\nb', { multiline: true })).toBe('a\r\nb');
  });

  it('cuts long values with a marker and stays within the budget', () => {
    const cut = storableText('x'.repeat(1_000), { maxChars: 100 });
    expect(cut.length).toBeLessThanOrEqual(100);
    expect(cut.endsWith(truncationMarker(1_000 - cut.indexOf('…')))).toBe(true);
  });

  it('decodes invalid UTF-8 with replacement characters', () => {
    expect(storableTextFromBytes(Buffer.from([0x61, 0xff, 0xfe, 0x62]))).toBe('a\ufffd\ufffdb');
  });

  it('always yields well-formed text without NUL, within the budget (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.integer({ min: 20, max: 500 }), (value, maxChars) => {
        const out = storableText(value, { maxChars });
        expect(out.includes('\u0000')).toBe(false);
        expect(out.isWellFormed()).toBe(true);
        expect(out.length).toBeLessThanOrEqual(Math.max(maxChars, Math.min(value.length , maxChars)));
        expect(Buffer.from(out, 'utf8').toString('utf8')).toBe(out);
      }),
    );
  });
});

describe('textProblem', () => {
  it('names what is wrong, or null', () => {
    expect(textProblem('fine', 10)).toBeNull();
    expect(textProblem('a\u0000', 10)).toMatch(/NUL/);
    expect(textProblem('a\ud800', 10)).toMatch(/surrogate/);
    expect(textProblem('a\nb', 10)).toMatch(/control/);
    expect(textProblem('x'.repeat(11), 10)).toMatch(/at most 10/);
  });
});
