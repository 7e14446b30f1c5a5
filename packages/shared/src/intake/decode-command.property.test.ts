// Property tests for the stream command decoder: whatever a producer (or an attacker with XADD)
// puts in an entry, decodeCommand answers a DeliveryCommand or a DecodeFailure — it never throws,
// since a throw leaves the entry pending and the consumer re-reads it forever — and
// whatever it reports about a refused entry can be written to mail.malformed_commands: a NUL, a
// lone surrogate or a 300 KB value copied into a failure field would make the quarantine insert
// itself fail and block the stream behind one entry. A fixed seed keeps a failure reproducible.
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FAILURE_CODES } from '../lifecycle/statuses.ts';
import { loadTemplateCatalog } from '../templates/template-catalog.ts';
import { storableText } from '../text/storable-text.ts';
import { acceptCommand, commandHash } from './accept-command.ts';
import { type DecodeFailure, type DecodeResult, decodeCommand, FAILURE_FIELD_CHARS } from './decode-command.ts';
import { quarantineCommand } from './quarantine.ts';
import { recordingPool } from './recording-pool.testkit.ts';

const SEED = 20_261_127;


/** Storable as it is: storableText() (the one sanitiser) has nothing to change. */
function unstorable(value: string, maxChars: number, multiline: boolean): string | null {
  const storable = storableText(value, { maxChars, multiline });
  if (storable === value) return null;
  return `${JSON.stringify(value.slice(0, 120))}${value.length > 120 ? `… (${value.length} chars)` : ''} would be stored as ${JSON.stringify(storable.slice(0, 120))}`;
}

function failureProblems(failure: DecodeFailure): string[] {
  const problems: string[] = [];
  if (!(FAILURE_CODES as readonly string[]).includes(failure.code)) problems.push(`unknown code ${failure.code}`);
  if (typeof failure.detail !== 'string') problems.push('detail is not a string');
  else {
    const problem = unstorable(failure.detail, FAILURE_FIELD_CHARS.detail, true);
    if (problem) problems.push(`detail: ${problem}`);
  }
  for (const key of ['schemaVersion', 'source', 'deliveryId'] as const) {
    const value = failure[key];
    if (value === null) continue;
    if (typeof value !== 'string') {
      problems.push(`${key} is ${typeof value}`);
      continue;
    }
    const problem = unstorable(value, FAILURE_FIELD_CHARS[key], false);
    if (problem) problems.push(`${key}: ${problem}`);
  }
  return problems;
}

function decodeOrThrowWhy(fields: Record<string, string>): DecodeResult {
  try {
    return decodeCommand(fields);
  } catch (error) {
    throw new Error(`decodeCommand threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
}

/** Decodes and checks the contract; returns the result for further checks. */
function checkContract(fields: Record<string, string>): DecodeResult {
  const result = decodeOrThrowWhy(fields);
  if (!result.ok) expect(failureProblems(result.failure)).toEqual([]);
  return result;
}

// --- hostile text ---------------------------------------------------------------------------------

/** Any UTF-16 string (lone surrogates and NUL included). */
const anyUnits = fc.string({ unit: 'binary', maxLength: 40 });
/** What a lenient reader makes of invalid UTF-8: U+FFFD, and the bytes themselves as latin1. */
const invalidUtf8 = fc.uint8Array({ maxLength: 40 }).chain((bytes) =>
  fc.constantFrom(Buffer.from(bytes).toString('utf8'), Buffer.from(bytes).toString('latin1')),
);
const pointed = fc.constantFrom(
  '\u0000', 'a\u0000b', '1\u0000', '2\u0000', '\ud800', '\udfff', 'x\ud83d', '\ufffd', '\u2028', 'a\r\nb', '\u001b[2J',
  ' 1', '1 ', '01', '1.0', '+1', '２', '１', '3', '', ' ', 'null', '{}', '[]', '"x"', '__proto__', 'constructor',
  'smtp', 'SMTP', 'template', 'rendered', 'a@b.c', '"a b"@example.com', 'a@[127.0.0.1]', 'ü@bücher.example', 'a@xn--',
  '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f', '6D1F7A52-4D0E-4B8E-9F3C-2A1B0C9D8E7F\u0000',
);
/** Up to 300,000 characters: past every field limit and past MAX_COMMAND_BYTES. */
const huge = fc.tuple(fc.nat({ max: 300_000 }), fc.constantFrom('x', '\u0000', '\ud800', 'é', '😀')).map(([n, unit]) => unit.repeat(Math.ceil(n / unit.length)));
const hostileText = fc.oneof(
  { weight: 4, arbitrary: anyUnits },
  { weight: 2, arbitrary: invalidUtf8 },
  { weight: 4, arbitrary: pointed },
  { weight: 1, arbitrary: huge },
);
/** A JSON value in a v2 command where a string was expected. */
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileText },
  { weight: 1, arbitrary: fc.constantFrom(null, 0, -1, 1e308, true, false, [], {}, ['a'], { a: '\u0000' }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

// --- valid commands to start from -----------------------------------------------------------------

const v1Template = {
  schema_version: '1', source: 'authsession', idempotency_key: 'login-42', recipient: 'alice@example.com', payload_mode: 'template',
  template_id: 'login-code', locale: 'de', variables: JSON.stringify({ code: '123456', expiresInMinutes: 10 }),
};
const v1Rendered = {
  schema_version: '1', source: 'billing', idempotency_key: 'inv-7', recipient: 'bob@example.com', payload_mode: 'rendered',
  subject: 'Invoice', text: 'Body', html: '<p>Body</p>', category: 'billing', delivery_id: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f',
};
const v2Command = () => ({
  source: 'authsession', idempotencyKey: 'login-42', to: 'alice@example.com', category: 'auth',
  deliveryId: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f',
  payload: { mode: 'rendered', subject: 'Hi', text: 'Body', html: null, templateId: 'login-code', locale: 'de', variables: { code: '1' } } as Record<string, unknown>,
});

const v1Keys = [...new Set([...Object.keys(v1Template), ...Object.keys(v1Rendered)])];
const v2Keys = Object.keys(v2Command());
const v2PayloadKeys = Object.keys(v2Command().payload);

type Edit = { kind: 'set'; key: string; value: string } | { kind: 'delete'; key: string } | { kind: 'extra'; key: string; value: string };
const edit = (keys: string[]): fc.Arbitrary<Edit> =>
  fc.oneof(
    fc.record({ kind: fc.constant('set' as const), key: fc.constantFrom(...keys), value: hostileText }),
    fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...keys) }),
    fc.record({ kind: fc.constant('extra' as const), key: fc.oneof(anyUnits, pointed), value: hostileText }),
  );

function applyEdits(base: Record<string, string>, edits: Edit[]): Record<string, string> {
  const fields: Record<string, string> = { ...base };
  for (const change of edits) {
    if (change.kind === 'delete') delete fields[change.key];
    else Object.defineProperty(fields, change.key, { value: change.value, enumerable: true, writable: true, configurable: true });
  }
  return fields;
}

const version = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('1', '2') }, { weight: 1, arbitrary: hostileText });

const v1Fields = fc
  .tuple(fc.constantFrom(v1Template, v1Rendered), fc.array(edit(v1Keys), { maxLength: 4 }))
  .map(([base, edits]) => applyEdits(base, edits));

/** v2: hostile values anywhere in the JSON (top level or payload), and sometimes broken JSON text. */
const v2Fields = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...v2Keys), hostileJson), { maxLength: 3 }),
    fc.array(fc.tuple(fc.constantFrom(...v2PayloadKeys), hostileJson), { maxLength: 3 }),
    fc.array(fc.constantFrom(...v2Keys, ...v2PayloadKeys.map((key) => `payload.${key}`)), { maxLength: 2 }),
    fc.option(fc.tuple(fc.nat(), hostileText), { freq: 4 }),
    fc.array(edit(['schema_version', 'command']), { maxLength: 2 }),
  )
  .map(([top, nested, deleted, corruption, edits]) => {
    const command: Record<string, unknown> = v2Command();
    const payload = command.payload as Record<string, unknown>;
    for (const [key, value] of top) command[key] = value;
    for (const [key, value] of nested) payload[key] = value;
    for (const key of deleted) {
      if (key.startsWith('payload.')) delete payload[key.slice('payload.'.length)];
      else delete command[key];
    }
    let text = JSON.stringify(command);
    if (corruption) {
      const [at, inserted] = corruption;
      const cut = at % (text.length + 1);
      text = `${text.slice(0, cut)}${inserted}${text.slice(cut)}`;
    }
    return applyEdits({ schema_version: '2', command: text }, edits);
  });

const randomFields = fc.dictionary(fc.oneof(pointed, anyUnits, fc.constantFrom(...v1Keys, 'command')), hostileText, { maxKeys: 8 });

const anyFields = fc
  .tuple(fc.oneof({ weight: 3, arbitrary: v1Fields }, { weight: 3, arbitrary: v2Fields }, { weight: 1, arbitrary: randomFields }), fc.option(version, { freq: 5 }))
  .map(([fields, forcedVersion]) => (forcedVersion === null ? fields : { ...fields, schema_version: forcedVersion }));

describe('decodeCommand on hostile field maps', () => {
  it('never throws; every failure has a known code and storable, bounded fields (both schema versions, random maps)', () => {
    fc.assert(
      fc.property(anyFields, (fields) => {
        checkContract(fields);
      }),
      { seed: SEED, numRuns: 3_000 },
    );
  }, 60_000);

  // One directed case per field and poison, so a failure names the field rather than a shrunk blob.
  const poisons = { NUL: 'a\u0000b', 'lone surrogate': 'a\ud800b', 'invalid UTF-8 read as latin1': Buffer.from([0xc3, 0x28, 0xff]).toString('latin1'), '300 KB': 'x'.repeat(300_000) };
  const cases: [string, string, Record<string, string>][] = [];
  for (const [poison, value] of Object.entries(poisons)) {
    cases.push([poison, 'schema_version', { ...v1Rendered, schema_version: value }]);
    for (const key of ['source', 'delivery_id', 'idempotency_key', 'recipient', 'payload_mode', 'category', 'subject']) cases.push([poison, `v1 ${key}`, { ...v1Rendered, [key]: value }]);
    cases.push([poison, 'v1 variables', { ...v1Template, variables: `{"code": "${value}"` }]);
    for (const key of ['source', 'deliveryId', 'to', 'category']) {
      cases.push([poison, `v2 ${key}`, { schema_version: '2', command: JSON.stringify({ ...v2Command(), [key]: value, payload: 1 }) }]);
    }
    cases.push([poison, 'v2 broken JSON', { schema_version: '2', command: `{"source": "${value}` }]);
    cases.push([poison, 'v2 source in broken payload', { schema_version: '2', command: JSON.stringify({ ...v2Command(), source: value, payload: 'x' }) }]);
  }
  it.each(cases)('%s in %s: a storable failure or a command', (_poison, _where, fields) => {
    checkContract(fields);
  });
});

describe('both schema versions say the same thing (silent-encoding-change: an encoding change must not change meaning)', () => {
  const sourceName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,30}$/).filter((name) => name !== 'smtp');
  const plainText = fc.string({ maxLength: 40 }).filter((value) => value.trim() !== '');
  const command = fc.record({
    source: sourceName,
    key: plainText,
    to: fc.constantFrom('alice@example.com', 'Bob@Example.COM', 'x.y+z@sub.example.org', 'ü@bücher.example'),
    category: fc.option(fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/), { nil: undefined }),
    deliveryId: fc.option(fc.uuid(), { nil: undefined }),
    payload: fc.oneof(
      fc.record({ mode: fc.constant('rendered' as const), subject: plainText, text: fc.option(plainText, { nil: undefined }), html: plainText }),
      fc.record({
        mode: fc.constant('template' as const),
        templateId: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/),
        locale: fc.option(fc.constantFrom('en', 'de', 'pt-BR', 'fr_CA'), { nil: undefined }),
        variables: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean())),
      }),
    ),
  });

  it('v1 flat fields and v2 JSON of the same command decode to the same command with the same hash', () => {
    let decoded = 0;
    fc.assert(
      fc.property(command, (c) => {
        const v1: Record<string, string> = { schema_version: '1', source: c.source, idempotency_key: c.key, recipient: c.to, payload_mode: c.payload.mode };
        if (c.category !== undefined) v1.category = c.category;
        if (c.deliveryId !== undefined) v1.delivery_id = c.deliveryId;
        if (c.payload.mode === 'rendered') {
          v1.subject = c.payload.subject;
          if (c.payload.text !== undefined) v1.text = c.payload.text;
          v1.html = c.payload.html;
        } else {
          v1.template_id = c.payload.templateId;
          if (c.payload.locale !== undefined) v1.locale = c.payload.locale;
          v1.variables = JSON.stringify(c.payload.variables);
        }
        const v2 = { schema_version: '2', command: JSON.stringify({ source: c.source, idempotencyKey: c.key, to: c.to, category: c.category, deliveryId: c.deliveryId, payload: c.payload }) };
        const one = decodeOrThrowWhy(v1);
        const two = decodeOrThrowWhy(v2);
        // Either both refuse with the same code, or both decode to the same command.
        if (!one.ok || !two.ok) {
          expect({ one: one.ok ? 'ok' : one.failure.code, two: two.ok ? 'ok' : two.failure.code }).toEqual({
            one: one.ok ? 'ok' : one.failure.code,
            two: one.ok ? 'ok' : one.failure.code,
          });
          return;
        }
        const { schemaVersion: _one, ...first } = one.command;
        const { schemaVersion: _two, ...second } = two.command;
        expect(second).toEqual(first);
        expect(commandHash(two.command)).toBe(commandHash(one.command));
        decoded++;
      }),
      { seed: SEED, numRuns: 1_000 },
    );
    // Most generated commands are valid: the comparison is not made on refusals alone.
    expect(decoded).toBeGreaterThan(800);
  }, 60_000);
});

describe('what a refused or accepted command writes to PostgreSQL is storable', () => {
  /** PostgreSQL refuses NUL in text and jsonb ("\u0000" included); a lone surrogate cannot be sent as UTF-8. */
  function unsendable({ sql, values }: { sql: string; values: unknown[] }): string[] {
    const problems: string[] = [];
    const jsonb = new Set([...sql.matchAll(/\$(\d+)::jsonb/g)].map((match) => Number(match[1]) - 1));
    values.forEach((value, index) => {
      if (typeof value !== 'string') return;
      if (value.includes('\u0000')) problems.push(`$${index + 1} contains NUL: ${JSON.stringify(value.slice(0, 80))}`);
      if (!value.isWellFormed()) problems.push(`$${index + 1} has a lone surrogate: ${JSON.stringify(value.slice(0, 80))}`);
      if (jsonb.has(index) && /\\u0000/i.test(value)) problems.push(`$${index + 1} is JSON with \\u0000, refused by jsonb: ${JSON.stringify(value.slice(0, 80))}`);
    });
    return problems;
  }

  const catalog = loadTemplateCatalog(path.resolve(import.meta.dirname, '../../../../templates'));

  async function rows(fields: Record<string, string>) {
    const result = decodeOrThrowWhy(fields);
    // Every string parameter of every statement, recorded instead of sent.
    const recorder = recordingPool();
    let failure = result.ok ? null : result.failure;
    let accepted = false;
    if (result.ok) {
      const outcome = await acceptCommand(recorder.pool, result.command, { catalog, sender: 'postern@mail.example' });
      if (outcome.status === 'refused') failure = outcome.failure;
      else accepted = true;
    }
    if (failure) await quarantineCommand(recorder.client as never, { channel: 'stream', streamEntryId: '1-0', raw: JSON.stringify(fields) }, failure);
    return { accepted, problems: recorder.statements.flatMap(unsendable) };
  }

  it('the quarantine row of any refused command', async () => {
    await fc.assert(
      fc.asyncProperty(anyFields, async (fields) => {
        expect((await rows(fields)).problems).toEqual([]);
      }),
      { seed: SEED, numRuns: 1_500 },
    );
  }, 60_000);

  // Free text a valid command may carry: the decoder lets it through, so the delivery row must hold it.
  const freeText = fc.oneof(anyUnits, pointed, invalidUtf8);
  const acceptable = fc.oneof(
    fc.record({ idempotency_key: freeText, subject: freeText, text: freeText, html: freeText }).map((free) => ({ ...v1Rendered, ...free })),
    fc.record({ idempotency_key: freeText, code: freeText }).map(({ idempotency_key, code }) => ({
      ...v1Template, idempotency_key, variables: JSON.stringify({ code, expiresInMinutes: 10 }),
    })),
    fc.record({ idempotencyKey: freeText, subject: freeText, text: freeText }).map(({ idempotencyKey, subject, text }) => ({
      schema_version: '2',
      command: JSON.stringify({ ...v2Command(), idempotencyKey, payload: { mode: 'rendered', subject, text } }),
    })),
  );

  it.each([
    ['a NUL in the idempotency key', { ...v1Rendered, idempotency_key: 'k\u0000' }],
    ['a NUL in the subject', { ...v1Rendered, subject: 'Hi\u0000' }],
    ['a lone surrogate in the text', { ...v1Rendered, text: 'a\ud800b' }],
    ['"\\u0000" in template variables (jsonb refuses it)', { ...v1Template, variables: '{"code": "12\\u00003", "expiresInMinutes": 10}' }],
  ])('%s: stored safely or refused', async (_name, fields) => {
    expect((await rows(fields)).problems).toEqual([]);
  });

  it('the delivery row of any command that decodes (or its quarantine row, if refused)', async () => {
    await fc.assert(
      fc.asyncProperty(acceptable, async (fields) => {
        expect((await rows(fields)).problems).toEqual([]);
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  }, 60_000);
});
