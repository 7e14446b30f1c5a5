import { describe, expect, it } from 'vitest';
import { commandHash } from './accept-command.ts';
import { MAX_VARIABLES_DEPTH } from './command-fields.ts';
import { decodeCommand, oversizedCommand } from './decode-command.ts';

const v1Template = {
  schema_version: '1',
  source: 'authsession',
  idempotency_key: 'login-42',
  recipient: 'Alice@Example.COM',
  payload_mode: 'template',
  template_id: 'login-code',
  locale: 'de',
  variables: JSON.stringify({ code: '123456', expiresInMinutes: 10 }),
};

const v2Template = {
  schema_version: '2',
  command: JSON.stringify({
    source: 'authsession',
    idempotencyKey: 'login-42',
    to: 'alice@example.com',
    payload: { mode: 'template', templateId: 'login-code', locale: 'de', variables: { expiresInMinutes: 10, code: '123456' } },
  }),
};

describe('decodeCommand', () => {
  it('decodes v1 (flat fields) and v2 (nested JSON) to the same command, with the same content hash', () => {
    const one = decodeCommand(v1Template);
    const two = decodeCommand(v2Template);
    expect(one.ok && two.ok).toBe(true);
    if (!one.ok || !two.ok) return;
    expect(one.command).toMatchObject({ schemaVersion: '1', recipient: 'alice@example.com', payload: { mode: 'template', templateId: 'login-code' } });
    expect(two.command).toMatchObject({ schemaVersion: '2', recipient: 'alice@example.com' });
    expect(commandHash(one.command)).toBe(commandHash(two.command));
  });

  it('decodes a rendered v2 payload and hashes different content differently', () => {
    const decoded = decodeCommand({
      schema_version: '2',
      command: JSON.stringify({ source: 'billing', idempotencyKey: 'k', to: 'b@example.com', payload: { mode: 'rendered', subject: 'Hi', text: 'Body' } }),
    });
    expect(decoded).toMatchObject({ ok: true, command: { payload: { mode: 'rendered', subject: 'Hi', text: 'Body', html: null } } });
    const other = decodeCommand({
      schema_version: '2',
      command: JSON.stringify({ source: 'billing', idempotencyKey: 'k', to: 'b@example.com', payload: { mode: 'rendered', subject: 'Hi', text: 'Other' } }),
    });
    if (!decoded.ok || !other.ok) throw new Error('expected both to decode');
    expect(commandHash(decoded.command)).not.toBe(commandHash(other.command));
  });

  it.each([
    ['no version', { source: 'x' }, 'unknown_version'],
    ['version 3', { ...v1Template, schema_version: '3' }, 'unknown_version'],
    ['v2 with broken JSON', { schema_version: '2', command: '{"source": ' }, 'invalid_json'],
    ['v1 with broken variables JSON', { ...v1Template, variables: '{nope' }, 'invalid_json'],
    ['v1 without recipient', { ...v1Template, recipient: '' }, 'missing_field'],
    ['v1 without idempotency key', { ...v1Template, idempotency_key: undefined as unknown as string }, 'missing_field'],
    ['v1 with a bad address', { ...v1Template, recipient: 'not an address' }, 'invalid_address'],
    ['v1 with unknown payload mode', { ...v1Template, payload_mode: 'carrier-pigeon' }, 'invalid_field'],
    ['v1 posing as the edge', { ...v1Template, source: 'smtp' }, 'invalid_field'],
    ['v1 posing as an API token', { ...v1Template, source: 'api:billing' }, 'invalid_field'],
    ['v2 posing as an API token', { schema_version: '2', command: JSON.stringify({ source: 'api:billing', idempotencyKey: 'k', to: 'a@b.cc', payload: { mode: 'rendered', subject: 's', text: 't' } }) }, 'invalid_field'],
    ['v1 with variables as a list', { ...v1Template, variables: '[1,2]' }, 'invalid_field'],
    ['v2 payload not an object', { schema_version: '2', command: JSON.stringify({ source: 's', idempotencyKey: 'k', to: 'a@b.cc', payload: 'x' }) }, 'invalid_field'],
    ['v2 rendered without a body', { schema_version: '2', command: JSON.stringify({ source: 's', idempotencyKey: 'k', to: 'a@b.cc', payload: { mode: 'rendered', subject: 's' } }) }, 'missing_field'],
    ['a huge command', { ...v1Template, text: 'x'.repeat(300 * 1024) }, 'too_large'],
  ])('%s -> %s', (_name, fields, code) => {
    const clean = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Record<string, string>;
    const decoded = decodeCommand(clean);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.failure.code).toBe(code);
  });

  it('reports the source and delivery id of a refused command where they are readable', () => {
    const decoded = decodeCommand({
      schema_version: '2',
      command: JSON.stringify({ source: 'billing', deliveryId: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f', to: 'x@y.z', payload: {} }),
    });
    expect(decoded).toMatchObject({ ok: false, failure: { code: 'missing_field', source: 'billing', deliveryId: '6d1f7a52-4d0e-4b8e-9f3c-2a1b0c9d8e7f', schemaVersion: '2' } });
  });

  it('names a bad template id by the field the producer wrote, in either version', () => {
    const one = decodeCommand({ ...v1Template, template_id: 'Login-Code' });
    expect(one).toMatchObject({ ok: false, failure: { code: 'invalid_field', detail: '"template_id" must be lower-case letters, digits and dashes' } });
    const command = JSON.parse(v2Template.command);
    const two = decodeCommand({ ...v2Template, command: JSON.stringify({ ...command, payload: { ...command.payload, templateId: 'Login-Code' } }) });
    expect(two).toMatchObject({ ok: false, failure: { code: 'invalid_field', detail: '"templateId" must be lower-case letters, digits and dashes' } });
  });

  it('a too_large detail gives the size; a command refused from its first bytes says what they show of it', () => {
    const huge = decodeCommand({ ...v1Template, text: 'x'.repeat(300 * 1024) });
    expect(huge).toMatchObject({ ok: false, failure: { code: 'too_large', source: 'authsession', schemaVersion: '1' } });
    if (!huge.ok) expect(huge.failure.detail).toMatch(/^command of 307\d{3} bytes, larger than 262144 bytes$/);
    expect(oversizedCommand({ ...v1Template, text: 'x'.repeat(1024) }, 'cut')).toEqual({
      ok: false,
      failure: { code: 'too_large', detail: 'cut', source: 'authsession', schemaVersion: '1', deliveryId: null },
    });
    // A v2 command cut short is not JSON: its version is known, its source is not.
    const cut = v2Template.command.slice(0, 40);
    expect(oversizedCommand({ schema_version: '2', command: cut }, 'cut')).toMatchObject({ ok: false, failure: { code: 'too_large', source: null, schemaVersion: '2' } });
  });

  it('an invalid_json detail never quotes the command (the detail is read with queue:read, the raw text needs commands:raw:read)', () => {
    for (const command of ['x{"code":"493817"}', '{"payload":{"variables":{"code":"493817","n": NaN}}}']) {
      const decoded = decodeCommand({ schema_version: '2', command });
      expect(decoded).toMatchObject({ ok: false, failure: { code: 'invalid_json', detail: '"command" is not JSON: unexpected token' } });
      if (!decoded.ok) expect(decoded.failure.detail).not.toContain('817');
    }
    const v1 = decodeCommand({ schema_version: '1', source: 's', idempotency_key: 'k', recipient: 'a@b.test', payload_mode: 'template', template_id: 'login-code', variables: 'x{"code":"493817"}' });
    expect(v1).toMatchObject({ ok: false, failure: { code: 'invalid_json' } });
    if (!v1.ok) expect(v1.failure.detail).not.toContain('817');
  });
});

describe('decodeCommand: values no text column can store', () => {
  const failureOf = (fields: Record<string, string>) => {
    const result = decodeCommand(fields);
    return result.ok ? null : result.failure;
  };

  it('reads a traceparent stream field beside either version, in version 00 form, and refuses one that is not', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    for (const fields of [v1Template, v2Template]) {
      expect(decodeCommand(fields)).toMatchObject({ ok: true, command: { traceparent: null } });
      expect(decodeCommand({ ...fields, traceparent })).toMatchObject({ ok: true, command: { traceparent } });
      expect(decodeCommand({ ...fields, traceparent: `01${traceparent.slice(2)}-more` })).toMatchObject({ ok: true, command: { traceparent } });
      expect(decodeCommand({ ...fields, traceparent: '' })).toMatchObject({ ok: true, command: { traceparent: null } });
      expect(failureOf({ ...fields, traceparent: '00-0-0-01' })).toMatchObject({ code: 'invalid_field', detail: expect.stringMatching(/^"traceparent" must be a W3C traceparent/) });
    }
  });

  it('refuses a NUL or a lone surrogate in any text field as invalid_field, naming the field', () => {
    expect(failureOf({ ...v1Template, idempotency_key: 'login\u000042' })).toMatchObject({ code: 'invalid_field', detail: '"idempotency_key" contains a NUL character' });
    const rendered = { schema_version: '1', source: 'billing', idempotency_key: 'k', recipient: 'a@example.com', payload_mode: 'rendered', subject: 's', text: 't' };
    expect(failureOf({ ...rendered, subject: 'a\ud800b' })).toMatchObject({ code: 'invalid_field', detail: '"subject" contains a lone UTF-16 surrogate (not valid Unicode)' });
    expect(failureOf({ ...rendered, text: 'x\u0000' })).toMatchObject({ code: 'invalid_field' });
    // Line breaks and tabs in a body are content, not poison.
    expect(decodeCommand({ ...rendered, text: 'line one\r\n\tline two' }).ok).toBe(true);
  });

  it('refuses them in template variables at any depth, keys too (escapes in JSON included)', () => {
    const withVariables = (json: string) => failureOf({ ...v1Template, variables: json });
    expect(withVariables('{"code":"12\\u00003456","expiresInMinutes":10}')).toMatchObject({ code: 'invalid_field', detail: '"variables.code" contains a NUL character' });
    expect(withVariables('{"code":"1","expiresInMinutes":10,"deep":{"a":[{"b":"\\ud800"}]}}')).toMatchObject({ code: 'invalid_field', detail: '"variables.deep.a.0.b" contains a lone UTF-16 surrogate (not valid Unicode)' });
    expect(withVariables('{"code":"1","expiresInMinutes":10,"k\\u0000":"v"}')).toMatchObject({ code: 'invalid_field', detail: 'a key in "variables" contains a NUL character' });
    // Deep nesting is walked without recursion: no stack overflow, a clear answer.
    const deep = `${'{"a":'.repeat(20_000)}"\\u0000"${'}'.repeat(20_000)}`;
    expect(withVariables(deep.replace('{"a":', '{"code":"1","expiresInMinutes":10,"a":'))).toMatchObject({ code: 'invalid_field' });
  });

  it('refuses template variables nested deeper than MAX_VARIABLES_DEPTH, in either version', () => {
    // `levels` objects and arrays, the variables object the first of them.
    const nested = (levels: number) => `{"code":"1","expiresInMinutes":10,"a":${'['.repeat(levels - 2)}{}${']'.repeat(levels - 2)}}`;
    const v2 = (variables: string) => ({
      schema_version: '2',
      command: `{"source":"s","idempotencyKey":"k","to":"a@example.com","payload":{"mode":"template","templateId":"login-code","variables":${variables}}}`,
    });
    expect(decodeCommand({ ...v1Template, variables: nested(MAX_VARIABLES_DEPTH) }).ok).toBe(true);
    expect(decodeCommand(v2(nested(MAX_VARIABLES_DEPTH))).ok).toBe(true);
    const refused = { code: 'invalid_field', detail: `"variables" is nested deeper than ${MAX_VARIABLES_DEPTH} levels of objects and arrays` };
    expect(failureOf({ ...v1Template, variables: nested(MAX_VARIABLES_DEPTH + 1) })).toMatchObject(refused);
    expect(failureOf(v2(nested(MAX_VARIABLES_DEPTH + 1)))).toMatchObject(refused);
    // Far deeper than JSON.stringify can walk: refused all the same, without a stack overflow.
    expect(failureOf(v2(nested(50_000)))).toMatchObject(refused);
  });
});
