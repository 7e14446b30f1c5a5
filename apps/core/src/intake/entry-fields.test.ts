import { describe, expect, it } from 'vitest';
import { decodeEntryFields } from './entry-fields.ts';

describe('decodeEntryFields: stream fields as bytes, decoded strictly', () => {
  it('decodes valid UTF-8 as it is, NUL and line breaks included (decode-command refuses what it must)', () => {
    const flat = [Buffer.from('subject'), Buffer.from('Grüße \u0000\r\n'), Buffer.from('source'), Buffer.from('billing')];
    expect(decodeEntryFields(flat)).toEqual({ fields: { subject: 'Grüße \u0000\r\n', source: 'billing' }, notUtf8: [], repeated: [] });
  });

  it('names every field whose value or name is not valid UTF-8, with U+FFFD where the bytes were', () => {
    const flat = [
      Buffer.from('subject'), Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65]), // latin1 "Grüße"
      Buffer.from('text'), Buffer.from([0x61, 0xed, 0xa0, 0x80]), // a surrogate as CESU-8 bytes
      Buffer.from([0x6b, 0xff]), Buffer.from('v'),
      Buffer.from('source'), Buffer.from('billing'),
    ];
    const { fields, notUtf8 } = decodeEntryFields(flat);
    expect(notUtf8).toEqual(['subject', 'text', 'k\ufffd']);
    expect(fields.subject).toBe('Gr\ufffd\ufffde');
    expect(fields.source).toBe('billing');
  });
  it('names every field given more than once, keeping its last value', () => {
    const flat = ['recipient', 'a@x.test', 'source', 'billing', 'recipient', 'b@y.test', 'recipient', 'c@z.test'].map((text) => Buffer.from(text));
    expect(decodeEntryFields(flat)).toEqual({ fields: { recipient: 'c@z.test', source: 'billing' }, notUtf8: [], repeated: ['recipient'] });
  });
});
