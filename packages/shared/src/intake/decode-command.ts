// Decoding a delivery command, whatever its schema version. silent-encoding-change: a producer changed its job
// encoding and every consumer failed every job, silently, for 17 hours. Here every command names its
// schema version; every supported version decodes to the same DeliveryCommand; anything else is a
// DecodeFailure with a code from a fixed list, which the caller quarantines (malformed_commands),
// counts and acknowledges. The wire formats are documented in docs/api/delivery-commands.asyncapi.yaml.
//
//   v1: flat stream fields (schema_version=1, source, idempotency_key, recipient, payload_mode,
//       template_id, locale, variables=<JSON object>, subject, text, html, category, delivery_id)
//   v2: schema_version=2 and one field `command` holding a JSON object with camelCase keys and a
//       nested payload: { source, idempotencyKey, to, category?, deliveryId?,
//                         payload: { mode: "template", templateId, locale?, variables }
//                                | { mode: "rendered", subject, text?, html? } }
import { InvalidAddressError, normalizeAddress } from '../addresses/normalize-address.ts';
import { FAILURE_CODES, type FailureCode, UUID_PATTERN } from '../lifecycle/statuses.ts';
import { storableText, storableTextOrNull, storageProblem } from '../text/storable-text.ts';

export const SUPPORTED_SCHEMA_VERSIONS = ['1', '2'] as const;
export type SchemaVersion = (typeof SUPPORTED_SCHEMA_VERSIONS)[number];

/** Bigger commands are refused as too_large: a command is a request, not a mail archive. */
export const MAX_COMMAND_BYTES = 256 * 1024;


export type CommandPayload =
  | { mode: 'template'; templateId: string; locale: string | null; variables: Record<string, unknown> }
  | { mode: 'rendered'; subject: string; text: string | null; html: string | null };

/** One command, independent of the version it arrived in. */
export interface DeliveryCommand {
  schemaVersion: SchemaVersion;
  source: string;
  idempotencyKey: string;
  /** A producer may choose the delivery's id (a UUID) to know it before the command is consumed. */
  deliveryId: string | null;
  /** Normalised (lower case, ASCII domain). */
  recipient: string;
  category: string | null;
  payload: CommandPayload;
}

export interface DecodeFailure {
  code: FailureCode;
  detail: string;
  schemaVersion: string | null;
  /** As far as readable, for the quarantine row. */
  source: string | null;
  deliveryId: string | null;
}

export type DecodeResult = { ok: true; command: DeliveryCommand } | { ok: false; failure: DecodeFailure };

/** The column budgets of mail.malformed_commands. */
export const FAILURE_FIELD_CHARS = { detail: 2_000, schemaVersion: 50, source: 200, deliveryId: 200 } as const;

/** Every failure is built here: what it repeats of the command (a NUL in `schema_version`, a lone
 *  surrogate in `source`, 300 KB of anything) is made storable once, at the boundary, so the
 *  quarantine row that records it can always be written (a poisoned `source` failed the
 *  quarantine insert and the entry came back forever). */
export function decodeFailure(
  code: FailureCode,
  detail: string,
  about: { schemaVersion: string | null; source: string | null; deliveryId: string | null },
): DecodeFailure {
  return {
    code,
    detail: storableText(detail, { maxChars: FAILURE_FIELD_CHARS.detail, multiline: true }),
    schemaVersion: storableTextOrNull(about.schemaVersion, { maxChars: FAILURE_FIELD_CHARS.schemaVersion }),
    source: storableTextOrNull(about.source, { maxChars: FAILURE_FIELD_CHARS.source }),
    deliveryId: storableTextOrNull(about.deliveryId, { maxChars: FAILURE_FIELD_CHARS.deliveryId }),
  };
}

const SOURCE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const TEMPLATE_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
const LOCALE = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;
const CATEGORY = /^[a-z0-9][a-z0-9_-]{0,63}$/;

class Refusal extends Error {
  readonly code: FailureCode;
  constructor(code: FailureCode, detail: string) {
    super(detail);
    this.code = code;
  }
}

type Raw = Record<string, unknown>;

function text(raw: Raw, key: string, required: true, max?: number): string;
function text(raw: Raw, key: string, required: false, max?: number): string | null;
function text(raw: Raw, key: string, required: boolean, max = 1_000): string | null {
  const value = raw[key];
  if (value === undefined || value === null || value === '') {
    if (required) throw new Refusal('missing_field', `"${key}" is required`);
    return null;
  }
  if (typeof value !== 'string') throw new Refusal('invalid_field', `"${key}" must be a string`);
  if (value.length > max) throw new Refusal('invalid_field', `"${key}" is longer than ${max} characters`);
  // Refused, not marked: a command is content Postern will send, and a producer must hear that a
  // NUL or a lone surrogate cannot be sent as it is (it would fail the insert).
  const problem = storageProblem(value);
  if (problem) throw new Refusal('invalid_field', `"${key}" ${problem}`);
  return value;
}

/** Every string (keys too) of the template variables must be storable in the jsonb column;
 *  iterative, so a deeply nested object cannot overflow the stack. */
function checkVariables(variables: Record<string, unknown>): void {
  const stack: Array<{ path: string; value: unknown }> = [{ path: 'variables', value: variables }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { path, value } = item;
    if (typeof value === 'string') {
      const problem = storageProblem(value);
      if (problem) throw new Refusal('invalid_field', `"${path}" ${problem}`);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        const problem = storageProblem(key);
        if (problem) throw new Refusal('invalid_field', `a key in "${path}" ${problem}`);
        stack.push({ path: `${path}.${key.slice(0, 40)}`, value: child });
      }
    }
  }
}

function matching(value: string | null, pattern: RegExp, key: string, what: string): string | null {
  if (value !== null && !pattern.test(value)) throw new Refusal('invalid_field', `"${key}" must be ${what}`);
  return value;
}

function recipientOf(value: string): string {
  try {
    return normalizeAddress(value).address;
  } catch (error) {
    if (error instanceof InvalidAddressError) throw new Refusal('invalid_address', error.message);
    throw error;
  }
}

function common(raw: Raw, keys: { source: string; key: string; to: string; deliveryId: string }) {
  const source = matching(text(raw, keys.source, true, 200), SOURCE, keys.source, 'letters, digits and ._:- (at most 200)') as string;
  // 'smtp' names deliveries the edge created; a producer must not pose as the edge.
  if (source === 'smtp') throw new Refusal('invalid_field', `"${keys.source}" "smtp" is reserved for the SMTP edge`);
  return {
    source,
    idempotencyKey: text(raw, keys.key, true, 200),
    deliveryId: matching(text(raw, keys.deliveryId, false), UUID_PATTERN, keys.deliveryId, 'a UUID')?.toLowerCase() ?? null,
    recipient: recipientOf(text(raw, keys.to, true, 320)),
    category: matching(text(raw, 'category', false, 64), CATEGORY, 'category', 'lower-case letters, digits, _ and -'),
  };
}

function renderedPayload(raw: Raw, keys: { text: string }): CommandPayload {
  const subject = text(raw, 'subject', true, 998);
  const body = text(raw, keys.text, false, MAX_COMMAND_BYTES);
  const html = text(raw, 'html', false, MAX_COMMAND_BYTES);
  if (body === null && html === null) throw new Refusal('missing_field', `a rendered payload needs "${keys.text}" or "html"`);
  return { mode: 'rendered', subject, text: body, html };
}

function templatePayload(raw: Raw, variables: unknown): CommandPayload {
  const templateId = matching(text(raw, 'template_id' in raw ? 'template_id' : 'templateId', true, 64), TEMPLATE_ID, 'template id', 'lower-case letters, digits and dashes') as string;
  const locale = matching(text(raw, 'locale', false, 35), LOCALE, 'locale', 'a locale such as en or pt-BR');
  if (variables === undefined || variables === null) throw new Refusal('missing_field', '"variables" is required for a template payload');
  if (typeof variables !== 'object' || Array.isArray(variables)) throw new Refusal('invalid_field', '"variables" must be a JSON object');
  checkVariables(variables as Record<string, unknown>);
  return { mode: 'template', templateId, locale, variables: variables as Record<string, unknown> };
}

// V8's "Unexpected token" message quotes the text around it ('Unexpected token 'N', ..."817","n":
// NaN}" is not valid JSON'). The detail is readable with queue:read, the raw command only with
// commands:raw:read: keep the command's text (and the token) out of the detail.
const QUOTED_INPUT = /^Unexpected token .*is not valid JSON$/s;

function parseJson(value: string, what: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Refusal('invalid_json', `${what} is not JSON: ${(error as Error).message.replace(QUOTED_INPUT, 'unexpected token')}`);
  }
}

function decodeV1(fields: Raw): DeliveryCommand {
  const base = common(fields, { source: 'source', key: 'idempotency_key', to: 'recipient', deliveryId: 'delivery_id' });
  const mode = text(fields, 'payload_mode', true, 20);
  let payload: CommandPayload;
  if (mode === 'template') {
    const variables = text(fields, 'variables', false, MAX_COMMAND_BYTES);
    payload = templatePayload(fields, variables === null ? undefined : parseJson(variables, '"variables"'));
  } else if (mode === 'rendered') payload = renderedPayload(fields, { text: 'text' });
  else throw new Refusal('invalid_field', '"payload_mode" must be "template" or "rendered"');
  return { schemaVersion: '1', ...base, payload };
}

function decodeV2(fields: Raw): DeliveryCommand {
  const body = parseJson(text(fields, 'command', true, MAX_COMMAND_BYTES), '"command"');
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Refusal('invalid_field', '"command" must be a JSON object');
  const command = body as Raw;
  const base = common(command, { source: 'source', key: 'idempotencyKey', to: 'to', deliveryId: 'deliveryId' });
  const payloadValue = command.payload;
  if (payloadValue === undefined || payloadValue === null) throw new Refusal('missing_field', '"payload" is required');
  if (typeof payloadValue !== 'object' || Array.isArray(payloadValue)) throw new Refusal('invalid_field', '"payload" must be an object');
  const payloadRaw = payloadValue as Raw;
  const mode = text(payloadRaw, 'mode', true, 20);
  let payload: CommandPayload;
  if (mode === 'template') payload = templatePayload(payloadRaw, payloadRaw.variables);
  else if (mode === 'rendered') payload = renderedPayload(payloadRaw, { text: 'text' });
  else throw new Refusal('invalid_field', '"payload.mode" must be "template" or "rendered"');
  return { schemaVersion: '2', ...base, payload };
}

/** What could be read of an undecodable command, for the quarantine row. */
function readable(fields: Raw, version: string | null): { source: string | null; deliveryId: string | null } {
  let raw: Raw = fields;
  if (version === '2' && typeof fields.command === 'string') {
    try {
      const parsed = JSON.parse(fields.command) as unknown;
      if (typeof parsed === 'object' && parsed !== null) raw = parsed as Raw;
    } catch {
      // Unreadable: nothing more to report.
    }
  }
  const pick = (...keys: string[]) => {
    for (const key of keys) if (typeof raw[key] === 'string' && (raw[key] as string).length <= 200) return raw[key] as string;
    return null;
  };
  return { source: pick('source'), deliveryId: pick('delivery_id', 'deliveryId') };
}

export function commandSize(fields: Record<string, string>): number {
  let size = 0;
  for (const [key, value] of Object.entries(fields)) size += Buffer.byteLength(key) + Buffer.byteLength(value);
  return size;
}

/** Decodes the fields of one stream entry (or an equivalent API request). Never throws. */
export function decodeCommand(fields: Record<string, string>): DecodeResult {
  const version = typeof fields.schema_version === 'string' ? fields.schema_version.trim() : null;
  const fail = (code: FailureCode, detail: string): DecodeResult => ({
    ok: false,
    failure: decodeFailure(code, detail, { schemaVersion: version, ...readable(fields, version) }),
  });
  if (commandSize(fields) > MAX_COMMAND_BYTES) return fail('too_large', `command larger than ${MAX_COMMAND_BYTES} bytes`);
  if (version === null || version === '') return fail('unknown_version', 'no "schema_version" field');
  try {
    if (version === '1') return { ok: true, command: decodeV1(fields) };
    if (version === '2') return { ok: true, command: decodeV2(fields) };
  } catch (error) {
    if (error instanceof Refusal) return fail(error.code, error.message);
    throw error;
  }
  return fail('unknown_version', `schema_version "${version.slice(0, 20)}" is not one of ${SUPPORTED_SCHEMA_VERSIONS.join(', ')}`);
}
