// What a delivery command is once a channel has validated it, and what a refusal of one says. Every
// channel (the Redis Stream in either schema version, GraphQL sendEmail) turns what it received into
// this one typed shape or into a DecodeFailure, and the one intake (intake-command.ts) takes it from
// there, so a command means the same thing whichever way it came.
import type { FailureCode } from '../lifecycle/statuses.ts';
import { storableText, storableTextOrNull } from '../text/storable-text.ts';

export const SUPPORTED_SCHEMA_VERSIONS = ['1', '2'] as const;
export type SchemaVersion = (typeof SUPPORTED_SCHEMA_VERSIONS)[number];

/** Bigger commands are refused as too_large: a command is a request, not a mail archive. */
export const MAX_COMMAND_BYTES = 256 * 1024;

export type CommandPayload =
  | { mode: 'template'; templateId: string; locale: string | null; variables: Record<string, unknown> }
  | { mode: 'rendered'; subject: string; text: string | null; html: string | null };

/** One command, independent of the channel and version it arrived in. */
export interface DeliveryCommand {
  /** The stream encoding it arrived in; sendEmail's input has the v2 shape and is recorded as 2. */
  schemaVersion: SchemaVersion;
  source: string;
  idempotencyKey: string;
  /** A producer may choose the delivery's id (a UUID) to know it before the command is consumed. */
  deliveryId: string | null;
  /** Normalised (lower case, ASCII domain). */
  recipient: string;
  category: string | null;
  payload: CommandPayload;
  /** The trace the delivery continues (W3C traceparent, version 00): the stream entry's
   *  `traceparent` field, or the context sendEmail ran in. Not content: two commands that differ
   *  only in it are the same command (commandHash). */
  traceparent: string | null;
}

export interface DecodeFailure {
  code: FailureCode;
  detail: string;
  schemaVersion: string | null;
  /** As far as readable, for the quarantine row. */
  source: string | null;
  deliveryId: string | null;
}

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
