// The rules for each field of a delivery command, as zod schemas that every channel builds its own
// shape from: the stream's v1 flat fields and v2 JSON (decode-command.ts) and GraphQL's sendEmail
// input (apps/api). So a value one channel refuses, every channel refuses, with the same code.
//
// Each schema is given the name its channel calls the field ("idempotency_key", "idempotencyKey",
// "template.id"), and every issue it raises is the whole failure detail, naming that field: the
// detail is what an operator reads in mail.malformed_commands. The failure code travels in the
// issue's params (missing_field, invalid_address, invalid_json); any other issue is invalid_field.
// Where in the input the refusal is comes from the zod issue's path, never from reading the message.
import { z } from 'zod';
import { InvalidAddressError, normalizeAddress } from '../addresses/normalize-address.ts';
import { BOUNCE_SOURCE } from '../lifecycle/fail-for-good.ts';
import { type FailureCode, UUID_PATTERN } from '../lifecycle/statuses.ts';
import { storageProblem } from '../text/storable-text.ts';
import { isTraceparent, normalizedTraceparent } from '../tracing/trace-context.ts';
import { MAX_COMMAND_BYTES } from './delivery-command.ts';

const SOURCE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const TEMPLATE_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
const LOCALE = /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/;
/** Sources Postern writes itself, and whose mail it is: no producer may pose as them, on the
 *  stream or as an API token's producer (tokens/api-token.ts). */
export const RESERVED_SOURCES: ReadonlyMap<string, string> = new Map([
  ['smtp', 'the SMTP edge'],
  [BOUNCE_SOURCE, "Postern's bounces"],
]);
/** The prefix of an API token's own producer, "api:<token name>" (tokens/api-token.ts): private to
 *  that token, so the stream refuses it — a stream producer writing as "api:billing" could otherwise
 *  take the billing token's idempotency keys and show its mail under that token's reads. */
export const API_PRODUCER_PREFIX = 'api:';
/** A delivery's category, as commands give it and MAIL_URGENT_CATEGORIES names it. */
export const CATEGORY = /^[a-z0-9][a-z0-9_-]{0,63}$/;

interface FailureParams {
  failure: FailureCode;
}
const failing = (failure: FailureCode): FailureParams => ({ failure });

/** The first problem of a refused input: its code, the detail to record, and where it is. */
export interface FieldRefusal {
  code: FailureCode;
  detail: string;
  /** The zod issue's path in the parsed input, e.g. ["template", "variables"]. */
  path: PropertyKey[];
}

/** Fields are checked in the order of their schema; the first refusal is the one reported. */
export function firstRefusal(error: z.ZodError): FieldRefusal {
  const [issue] = error.issues;
  if (!issue) return { code: 'invalid_field', detail: 'refused', path: [] };
  const params = issue.code === 'custom' ? (issue.params as Partial<FailureParams> | undefined) : undefined;
  return { code: params?.failure ?? 'invalid_field', detail: issue.message, path: issue.path };
}

/** Producers send '' and null for "not given" as often as they leave a field out. */
const blankToAbsent = (value: unknown) => (value === null || value === '' ? undefined : value);
const nullToAbsent = (value: unknown) => (value === null ? undefined : value);

/** `schema` for a value that is there; absent, the refusal is missing_field with `missing`. */
function present<T extends z.ZodType>(schema: T, missing: string, absent: (value: unknown) => unknown = blankToAbsent) {
  return z.preprocess(
    absent,
    z
      .unknown()
      .refine((value): boolean => value !== undefined, { error: missing, params: failing('missing_field'), abort: true })
      .pipe(schema),
  );
}

/** `schema` or null when absent. */
function optional<T extends z.ZodType>(schema: T) {
  return z.preprocess(blankToAbsent, schema.optional()).transform((value) => value ?? null);
}

/** Text a command carries: a string no longer than `max` that a text column can store as it is.
 *  Refused, not marked: a command is content Postern will send, and a producer must hear that a
 *  NUL or a lone surrogate cannot be sent as it is (it would fail the insert). */
function text(name: string, max: number) {
  return z
    .string({ error: `"${name}" must be a string` })
    // In UTF-16 units, as the column budgets are counted (zod's .max() counts code points).
    .refine((value) => value.length <= max, `"${name}" is longer than ${max} characters`)
    .superRefine((value, context) => {
      const problem = storageProblem(value);
      if (problem) context.addIssue({ code: 'custom', message: `"${name}" ${problem}` });
    });
}

const requiredText = (name: string, max = 1_000) => present(text(name, max), `"${name}" is required`);

// V8's "Unexpected token" message quotes the text around it ('Unexpected token 'N', ..."817","n":
// NaN}" is not valid JSON'). The detail is readable with queue:read, the raw command only with
// commands:raw:read: keep the command's text (and the token) out of the detail.
const QUOTED_INPUT = /^Unexpected token .*is not valid JSON$/s;

/** JSON text (`what` names it in the detail, quotes included) parsed, or invalid_json. */
function parsedJson(what: string) {
  return (value: string, context: z.RefinementCtx): unknown => {
    try {
      return JSON.parse(value);
    } catch (error) {
      const message = `${what} is not JSON: ${(error as Error).message.replace(QUOTED_INPUT, 'unexpected token')}`;
      context.addIssue({ code: 'custom', message, params: failing('invalid_json') });
      return z.NEVER;
    }
  };
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects and arrays in template variables, the variables object itself being the first level.
 *  JSON.parse takes any depth, but JSON.stringify (storing the variables, quarantining an API
 *  request) and the renderer recurse: 5,000 levels overflowed the stack, and on the stream the
 *  entry was retried into handling_failed, holding the stream for seconds each time. */
export const MAX_VARIABLES_DEPTH = 32;

/** Every string (keys too) of template variables must be storable in the jsonb column, and the
 *  value no deeper than MAX_VARIABLES_DEPTH; walked iteratively, so a deeply nested object cannot
 *  overflow the stack here. A number JSON cannot hold (1e999 parses as Infinity) becomes null, as
 *  JSON.stringify stores it: the command is then the JSON value that is stored and hashed. The
 *  parsed value is this command's own, so it is changed in place. */
function storableVariables(name: string) {
  return (variables: Record<string, unknown>, context: z.RefinementCtx): Record<string, unknown> => {
    const stack: Array<{ path: string; value: unknown; parent: Record<string, unknown> | null; key: string; depth: number }> = [
      { path: name, value: variables, parent: null, key: '', depth: 1 },
    ];
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      const { path, value, depth } = item;
      if (typeof value === 'string') {
        const problem = storageProblem(value);
        if (problem) {
          context.addIssue({ code: 'custom', message: `"${path}" ${problem}` });
          return variables;
        }
      } else if (typeof value === 'number' && !Number.isFinite(value) && item.parent) {
        item.parent[item.key] = null;
      } else if (value !== null && typeof value === 'object') {
        if (depth > MAX_VARIABLES_DEPTH) {
          context.addIssue({ code: 'custom', message: `"${name}" is nested deeper than ${MAX_VARIABLES_DEPTH} levels of objects and arrays` });
          return variables;
        }
        for (const [key, child] of Object.entries(value)) {
          const problem = storageProblem(key);
          if (problem) {
            context.addIssue({ code: 'custom', message: `a key in "${path}" ${problem}` });
            return variables;
          }
          stack.push({ path: `${path}.${key.slice(0, 40)}`, value: child, parent: value as Record<string, unknown>, key, depth: depth + 1 });
        }
      }
    }
    return variables;
  };
}

/** A value that is not text (an object): absent only when missing or null. */
export function requiredValue<T extends z.ZodType>(schema: T, missing: string) {
  return present(schema, missing, nullToAbsent);
}

/** A JSON object of template variables (already parsed). */
function variables(name: string) {
  return requiredValue(
    z.custom<Record<string, unknown>>(isJsonObject, { error: `"${name}" must be a JSON object` }).transform(storableVariables(name)),
    `"${name}" is required for a template payload`,
  );
}

/** The field rules, each given the name its channel uses for the field. */
export const commandField = {
  /** The producer, and the scope of its idempotency keys. */
  source: (name: string) =>
    present(
      text(name, 200)
        .regex(SOURCE, `"${name}" must be letters, digits and ._:- (at most 200)`)
        // 'smtp' names deliveries the edge created, 'postern-dsn' the bounces: a producer must not
        // pose as them (their mail is an operator's to read, not a producer's).
        .superRefine((value, context) => {
          const owner = RESERVED_SOURCES.get(value);
          if (owner) context.addIssue({ code: 'custom', message: `"${name}" "${value}" is reserved for ${owner}` });
        }),
      `"${name}" is required`,
    ),
  /** The producer as the stream gives it: a source, and not one of an API token's own. */
  streamSource: (name: string) =>
    commandField.source(name).refine((value) => !value.startsWith(API_PRODUCER_PREFIX), {
      message: `"${name}" may not start with "${API_PRODUCER_PREFIX}": that names an API token's own producer`,
    }),
  idempotencyKey: (name: string) => requiredText(name, 200),
  deliveryId: (name: string) =>
    optional(text(name, 1_000).regex(UUID_PATTERN, `"${name}" must be a UUID`).transform((value) => value.toLowerCase())),
  /** Normalised (lower case, ASCII domain); an address that does not parse is invalid_address. */
  recipient: (name: string) =>
    requiredText(name, 320).transform((value, context) => {
      try {
        return normalizeAddress(value).address;
      } catch (error) {
        if (!(error instanceof InvalidAddressError)) throw error;
        context.addIssue({ code: 'custom', message: error.message, params: failing('invalid_address') });
        return z.NEVER;
      }
    }),
  category: (name: string) => optional(text(name, 64).regex(CATEGORY, `"${name}" must be lower-case letters, digits, _ and -`)),
  /** "template" or "rendered"; `enumName` names the field when it is text but neither. */
  payloadMode: (name: string, enumName = name) =>
    present(
      text(name, 20).pipe(z.enum(['template', 'rendered'], { error: `"${enumName}" must be "template" or "rendered"` })),
      `"${name}" is required`,
    ),
  templateId: (name: string) =>
    present(text(name, 64).regex(TEMPLATE_ID, `"${name}" must be lower-case letters, digits and dashes`), `"${name}" is required`),
  locale: (name: string) => optional(text(name, 35).regex(LOCALE, `"${name}" must be a locale such as en or pt-BR`)),
  variables,
  /** One field of JSON text, parsed (v2's `command`). */
  json: (name: string) => requiredText(name, MAX_COMMAND_BYTES).transform(parsedJson(`"${name}"`)),
  /** Template variables as one field of JSON text (v1), parsed; absent stays absent. */
  variablesJson: (name: string) => z.preprocess(blankToAbsent, text(name, MAX_COMMAND_BYTES).transform(parsedJson(`"${name}"`)).optional()),
  subject: (name: string) => requiredText(name, 998),
  /** A rendered body, text or html; renderedBody() requires one of them. */
  body: (name: string) => optional(text(name, MAX_COMMAND_BYTES)),
  /** The producer's W3C trace context, continued by the delivery's spans; stored in version 00
   *  form. Refused when given but not one: a producer must hear that its traces break here. */
  traceparent: (name: string) =>
    optional(
      text(name, 512)
        .refine(isTraceparent, `"${name}" must be a W3C traceparent (00-<32 hex digits>-<16 hex digits>-<2 hex digits>, ids not all zero)`)
        .transform((value) => normalizedTraceparent(value) as string),
    ),
};

/** The check of a rendered payload: text, html or both, reported at its text field. */
export function renderedBody(textName: string, htmlName: string) {
  return (payload: { text?: string | null; html?: string | null }, context: z.RefinementCtx) => {
    if (payload.text === null && payload.html === null) {
      context.addIssue({
        code: 'custom',
        message: `a rendered payload needs "${textName}" or "${htmlName}"`,
        path: ['text'],
        params: failing('missing_field'),
      });
    }
  };
}
