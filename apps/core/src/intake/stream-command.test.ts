import { describe, expect, it } from 'vitest';
import { decodeStreamEntry } from './stream-command.ts';

const flat = (fields: Record<string, string | Buffer>) => Object.entries(fields).flatMap(([name, value]) => [Buffer.from(name), Buffer.from(value)]);

const rendered = {
  schema_version: '1', source: 'billing', idempotency_key: 'inv-7', recipient: 'Bob@Example.COM', payload_mode: 'rendered', subject: 'Invoice', text: 'Body',
};

describe('decodeStreamEntry: a stream entry as a typed command', () => {
  it('decodes an entry to the command, keeping its fields as the raw text', () => {
    const { raw, decoded } = decodeStreamEntry(flat(rendered));
    expect(decoded).toMatchObject({ ok: true, command: { schemaVersion: '1', source: 'billing', recipient: 'bob@example.com' } });
    expect(JSON.parse(raw)).toEqual(rendered);
  });

  it('refuses an entry with a field that is not UTF-8, though its text would decode, saying what it knows', () => {
    const { raw, decoded } = decodeStreamEntry(flat({ ...rendered, subject: Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65]) }));
    expect(decoded).toEqual({
      ok: false,
      failure: {
        code: 'invalid_field',
        detail: '"subject" not valid UTF-8 (the invalid bytes are U+FFFD in the raw copy)',
        schemaVersion: '1',
        source: 'billing',
        deliveryId: null,
      },
    });
    expect(raw).toContain('"subject":"Gr\ufffd\ufffde"');
  });

  it('refuses an entry that gives a field name twice: which recipient was meant is a guess', () => {
    const twice = [...flat(rendered), Buffer.from('recipient'), Buffer.from('mallory@example.com')];
    expect(decodeStreamEntry(twice).decoded).toEqual({
      ok: false,
      failure: {
        code: 'invalid_field',
        detail: '"recipient" given more than once (the raw copy holds the last value)',
        schemaVersion: '1',
        source: 'billing',
        deliveryId: null,
      },
    });
    // Even when both values are the same: the entry is not what the schema says an entry is.
    expect(decodeStreamEntry([...flat(rendered), Buffer.from('source'), Buffer.from('billing')]).decoded).toMatchObject({ ok: false });
  });

  it('keeps a decode refusal as it is when every field is UTF-8', () => {
    const { decoded } = decodeStreamEntry(flat({ ...rendered, recipient: 'not an address' }));
    expect(decoded).toMatchObject({ ok: false, failure: { code: 'invalid_address', source: 'billing' } });
  });
});
