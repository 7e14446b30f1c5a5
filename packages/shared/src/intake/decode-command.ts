// Decoding a stream command, whatever its schema version. silent-encoding-change: a producer changed
// its job encoding and every consumer failed every job, silently, for 17 hours. Here every command
// names its schema version; every supported version decodes, through zod schemas built from the
// same field rules (command-fields.ts), to the same DeliveryCommand; anything else is a
// DecodeFailure with a code from a fixed list, which the caller quarantines (malformed_commands),
// counts and acknowledges. The wire formats are documented in docs/api/delivery-commands.asyncapi.yaml.
//
//   v1: flat stream fields (schema_version=1, source, idempotency_key, recipient, payload_mode,
//       template_id, locale, variables=<JSON object>, subject, text, html, category, delivery_id)
//   v2: schema_version=2 and one field `command` holding a JSON object with camelCase keys and a
//       nested payload: { source, idempotencyKey, to, category?, deliveryId?,
//                         payload: { mode: "template", templateId, locale?, variables }
//                                | { mode: "rendered", subject, text?, html? } }
//   Either version may carry a stream field `traceparent` (W3C trace context) beside the others:
//   the producer's trace, which the delivery continues. It is context, not content, so in v2 it
//   sits beside `command` as a message header does, not inside it.
//
// Fields are checked in the order of each schema and the first refusal is reported, so a command
// with several problems is always refused for the same one.
import { z } from 'zod';
import type { FailureCode } from '../lifecycle/statuses.ts';
import { commandField, firstRefusal, renderedBody, requiredValue } from './command-fields.ts';
import {
  type DecodeFailure,
  type DeliveryCommand,
  decodeFailure,
  MAX_COMMAND_BYTES,
  SUPPORTED_SCHEMA_VERSIONS,
} from './delivery-command.ts';

export { type DecodeFailure, FAILURE_FIELD_CHARS } from './delivery-command.ts';

export type DecodeResult = { ok: true; command: DeliveryCommand } | { ok: false; failure: DecodeFailure };

const renderedFields = { subject: commandField.subject('subject'), text: commandField.body('text'), html: commandField.body('html') };

// v1 carries the variables as JSON text, which is parsed before the template's fields are checked.
const v1Template = z.looseObject({ payload_mode: z.literal('template'), variables: commandField.variablesJson('variables') }).pipe(
  z.object({
    payload_mode: z.literal('template'),
    template_id: commandField.templateId('template_id'),
    locale: commandField.locale('locale'),
    variables: commandField.variables('variables'),
  }),
);

// A payload's mode is checked as text first (so a NUL in it is named as such); the branch it
// selects then checks the payload's own fields.
const v1Payload = z.looseObject({ payload_mode: commandField.payloadMode('payload_mode') }).pipe(
  z.discriminatedUnion('payload_mode', [
    v1Template,
    z.object({ payload_mode: z.literal('rendered'), ...renderedFields }).superRefine(renderedBody('text', 'html')),
  ]),
);

// v1's payload fields sit beside the common ones: the schema reads the same fields once more as
// the payload, after the common fields, as v2 nests it.
const v1 = z
  .preprocess(
    (fields) => ({ ...(fields as Record<string, string>), payload: fields }),
    z.object({
      source: commandField.streamSource('source'),
      idempotency_key: commandField.idempotencyKey('idempotency_key'),
      delivery_id: commandField.deliveryId('delivery_id'),
      recipient: commandField.recipient('recipient'),
      category: commandField.category('category'),
      payload: v1Payload,
      traceparent: commandField.traceparent('traceparent'),
    }),
  )
  .transform(
    ({ payload, ...fields }): DeliveryCommand => ({
      schemaVersion: '1',
      source: fields.source,
      idempotencyKey: fields.idempotency_key,
      deliveryId: fields.delivery_id,
      recipient: fields.recipient,
      category: fields.category,
      payload:
        payload.payload_mode === 'template'
          ? { mode: 'template', templateId: payload.template_id, locale: payload.locale, variables: payload.variables }
          : { mode: 'rendered', subject: payload.subject, text: payload.text, html: payload.html },
      traceparent: fields.traceparent,
    }),
  );

const v2Payload = requiredValue(
  z.looseObject({ mode: commandField.payloadMode('mode', 'payload.mode') }, { error: '"payload" must be an object' }).pipe(
    z.discriminatedUnion('mode', [
      z.object({
        mode: z.literal('template'),
        templateId: commandField.templateId('templateId'),
        locale: commandField.locale('locale'),
        variables: commandField.variables('variables'),
      }),
      z.object({ mode: z.literal('rendered'), ...renderedFields }).superRefine(renderedBody('text', 'html')),
    ]),
  ),
  '"payload" is required',
);

const v2Command = z.object(
  {
    source: commandField.streamSource('source'),
    idempotencyKey: commandField.idempotencyKey('idempotencyKey'),
    deliveryId: commandField.deliveryId('deliveryId'),
    to: commandField.recipient('to'),
    category: commandField.category('category'),
    payload: v2Payload,
  },
  { error: '"command" must be a JSON object' },
);

const v2 = z
  .object({ command: commandField.json('command').pipe(v2Command), traceparent: commandField.traceparent('traceparent') })
  .transform(
    ({ command, traceparent }): DeliveryCommand => ({
      schemaVersion: '2',
      source: command.source,
      idempotencyKey: command.idempotencyKey,
      deliveryId: command.deliveryId,
      recipient: command.to,
      category: command.category,
      payload: command.payload,
      traceparent,
    }),
  );

type Raw = Record<string, unknown>;

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

function versionOf(fields: Raw): string | null {
  return typeof fields.schema_version === 'string' ? fields.schema_version.trim() : null;
}

/** A command too large to be read whole (the stream's entries past the engine's read limit): refused
 *  from `fields`, the first bytes of its fields, which say what they can of it (its source and
 *  schema version when they came early and short; a v2 `command` cut short is not parsed). */
export function oversizedCommand(fields: Record<string, string>, detail: string): DecodeResult {
  const version = versionOf(fields);
  return { ok: false, failure: decodeFailure('too_large', detail, { schemaVersion: version, ...readable(fields, version) }) };
}

/** Decodes the fields of one stream entry. Never throws. */
export function decodeCommand(fields: Record<string, string>): DecodeResult {
  const version = versionOf(fields);
  const fail = (code: FailureCode, detail: string): DecodeResult => ({
    ok: false,
    failure: decodeFailure(code, detail, { schemaVersion: version, ...readable(fields, version) }),
  });
  const size = commandSize(fields);
  if (size > MAX_COMMAND_BYTES) return fail('too_large', `command of ${size} bytes, larger than ${MAX_COMMAND_BYTES} bytes`);
  if (version === null || version === '') return fail('unknown_version', 'no "schema_version" field');
  const schema = version === '1' ? v1 : version === '2' ? v2 : null;
  if (schema === null) {
    return fail('unknown_version', `schema_version "${version.slice(0, 20)}" is not one of ${SUPPORTED_SCHEMA_VERSIONS.join(', ')}`);
  }
  const decoded = schema.safeParse(fields);
  if (decoded.success) return { ok: true, command: decoded.data };
  const refusal = firstRefusal(decoded.error);
  return fail(refusal.code, refusal.detail);
}
