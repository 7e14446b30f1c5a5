// The content hash is stored with every idempotency reservation, and a producer's retry is a
// duplicate only if it hashes the same: the hash of stored content must never change. The fixed
// hashes below are what the reference canonical JSON kept here gives; the properties say the
// RFC 8785 form (the canonicalize library) agrees with it on every JSON value and every command.
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandHash } from './accept-command.ts';
import { decodeCommand } from './decode-command.ts';
import type { DeliveryCommand } from './delivery-command.ts';

/** The canonical JSON the stored hashes were made with: keys sorted by UTF-16 code units at every
 *  level, everything else as JSON.stringify writes it. */
function referenceCanonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(referenceCanonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${referenceCanonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const login: DeliveryCommand = {
  schemaVersion: '1',
  source: 'authsession',
  idempotencyKey: 'login-42',
  deliveryId: null,
  recipient: 'alice@example.com',
  category: null,
  payload: { mode: 'template', templateId: 'login-code', locale: 'de', variables: { code: '123456', expiresInMinutes: 10 } },
  traceparent: null,
};

const receipt: DeliveryCommand = {
  schemaVersion: '2',
  source: 'billing',
  idempotencyKey: 'order-1234-receipt',
  deliveryId: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f',
  recipient: 'bob@xn--bcher-kva.example',
  category: 'receipts',
  payload: { mode: 'rendered', subject: 'Ihre Quittung – Bestellung 1234 ✓', text: 'Danke!\r\n\tZeile zwei', html: null },
  traceparent: null,
};

/** Keys that sort differently by code unit and by code point, numbers with several spellings,
 *  escapes, an own "__proto__" key. */
const variables: DeliveryCommand = {
  schemaVersion: '2',
  source: 'api:crm',
  idempotencyKey: 'digest 2025/w03 😀',
  deliveryId: null,
  recipient: 'x.y+z@sub.example.org',
  category: 'digest_weekly',
  payload: {
    mode: 'template',
    templateId: 'notification-digest',
    locale: 'pt-BR',
    variables: {
      z: [1, 0.1, -0, 1e21, 1e-7, 123456789012345680000, -5e-324, true, false, null],
      é: 'accent',
      'e\u0301': 'combining',
      A: { nested: { deeper: ['a', { b: 'c' }] } },
      '😀': 'emoji key',
      '\u20ac': 'euro',
      '': 'empty key',
      quote: 'say "hi"\\ \u2028 \u0007 \u007f',
      ['__proto__']: 'own key',
      items: [{ title: 'One', url: 'https://x.test/1' }, []],
    },
  },
  traceparent: null,
};

describe('commandHash', () => {
  it.each([
    ['a template command', login, 'sha256:3833044da8ff06d3116069fdbdd86da8f797e08b5ce4e3dbf0d96cfaa45fa738'],
    ['a rendered command', receipt, 'sha256:a66338da3159707652f7d36d21d48bca03f9292307fa872847e3c4b7a69beb8e'],
    ['unusual variables', variables, 'sha256:d9a3a6dab938c0b894708758a7d0d3fc182d229a597b4e0377da6ffce3ea5823'],
  ])('%s hashes as it always did', (_name, command, hash) => {
    expect(commandHash(command)).toBe(hash);
  });

  it('the trace a command continues is not content: a retry from another trace is the same command', () => {
    const traced = { ...receipt, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
    expect(commandHash(traced)).toBe(commandHash(receipt));
  });

  it('a number JSON cannot hold (1e999) hashes as the null it is stored as', () => {
    const decoded = decodeCommand({
      schema_version: '2',
      command:
        '{"source":"s","idempotencyKey":"k","to":"a@b.test","payload":{"mode":"template","templateId":"t","variables":{"big":1e999,"neg":-1e400,"__proto__":{"x":1}}}}',
    });
    if (!decoded.ok) throw new Error(decoded.failure.detail);
    expect(decoded.command.payload).toMatchObject({ variables: { big: null, neg: null } });
    expect(commandHash(decoded.command)).toBe('sha256:528748de3560213f7a9200f5e2ffb630a0755e4c87528ee35b1cb065eae09237');
  });

  it('the RFC 8785 form is the reference canonical JSON for every JSON value', () => {
    const value = fc.oneof(
      fc.jsonValue(),
      fc.jsonValue({ stringUnit: 'grapheme' }),
      fc.jsonValue({ stringUnit: 'binary' }).filter((json) => JSON.stringify(json).isWellFormed()),
    );
    fc.assert(
      fc.property(value, (json) => {
        expect(canonicalize(json)).toBe(referenceCanonicalJson(json));
      }),
      { numRuns: 2_000 },
    );
  });

  it('so every command hashes as it did with the reference', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 30 });
    const command = fc.record({
      schemaVersion: fc.constantFrom('1' as const, '2' as const),
      source: text,
      idempotencyKey: text,
      deliveryId: fc.option(fc.uuid()),
      recipient: text,
      category: fc.option(text),
      payload: fc.oneof(
        fc.record({ mode: fc.constant('template' as const), templateId: text, locale: fc.option(text), variables: fc.dictionary(text, fc.jsonValue({ stringUnit: 'grapheme' })) }),
        fc.record({ mode: fc.constant('rendered' as const), subject: text, text: fc.option(text), html: fc.option(text) }),
      ),
      traceparent: fc.option(fc.constant('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')),
    });
    fc.assert(
      fc.property(command, (c) => {
        const { schemaVersion: _version, traceparent: _trace, ...content } = c;
        expect(commandHash(c)).toBe(`sha256:${createHash('sha256').update(referenceCanonicalJson(content)).digest('hex')}`);
      }),
      { numRuns: 500 },
    );
  });
});
