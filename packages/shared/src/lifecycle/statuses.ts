// The delivery lifecycle's vocabularies, each written once: the apps' types, the metrics' label
// values and the GraphQL enums are built from these lists, and e2e/foundation/lifecycle-constants.e2e.test.ts
// checks that they equal the migrations' CHECK constraints, so code and schema cannot drift apart.
// The order is the order of the CHECK lists; the GraphQL enums keep it.

/** mail.deliveries.status */
export const DELIVERY_STATUSES = ['queued', 'retrying', 'sending', 'sent', 'failed', 'dead_letter', 'suppressed', 'cancelled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** mail.deliveries.payload_mode — relay: bytes of a received message; template: rendered at send
 *  time; rendered: content given by the producer. */
export const PAYLOAD_MODES = ['relay', 'template', 'rendered'] as const;
export type PayloadMode = (typeof PAYLOAD_MODES)[number];

/** mail.attempts.status — outcome_unknown: the data went out but no reply came (timeout after
 *  DATA, lease lost), so the message may or may not have been delivered. */
export const ATTEMPT_STATUSES = ['sent', 'transport_failed', 'timed_out', 'provider_rejected', 'outcome_unknown'] as const;
export type AttemptStatus = (typeof ATTEMPT_STATUSES)[number];

/** mail.malformed_commands.failure_code: why a stream or API command was quarantined. */
export const FAILURE_CODES = [
  'invalid_json',
  'unknown_version',
  'missing_field',
  'invalid_field',
  'unknown_template',
  'missing_variable',
  'invalid_address',
  'idempotency_conflict',
  'too_large',
  // Not a decode failure: a command that decoded, but whose acceptance failed again and again with
  // an error that is neither bad data nor the database being away (apps/core intake); quarantined
  // so it cannot block the stream.
  'handling_failed',
] as const;
export type FailureCode = (typeof FAILURE_CODES)[number];

/** A delivery id, as PostgreSQL's uuid type prints it (lower case) or a client may write it. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(text: string): boolean {
  return UUID_PATTERN.test(text);
}
