// Fail for good: what is stored besides the status when a delivery ends without being sent
// (`failed`, or `dead_letter` by record-outcomes.ts or reclaim-expired-leases.ts). Which status,
// which reason and which bounce is decided by the engine (apps/core/src/delivery/fail-for-good.ts,
// with the template catalog); what it decided is written here:
//   - the bounce, an RFC 3464 DSN, is itself a relayed message: stored like mail the edge accepted
//     — messages, payload, one delivery — and sent by the same queue with the null reverse-path
//     (RFC 5321 4.5.5: a bounce is sent from <>, so it can never bounce back). Inserted in the same
//     transaction as the failure it reports: the failure and its notice commit together. The text
//     columns get storableText() whatever the caller built: the bounce quotes a Subject from
//     outside, and one NUL in it must not fail the failure's whole batch (and then the reclaim, on
//     every pass);
//     The bounce continues the failed delivery's trace (its traceparent);
//   - a dead letter whose bounce could not be stored says so in its reason (noteUnbounced).
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../aliases/index.ts';
import { storableText } from '../text/storable-text.ts';

/** deliveries.last_error and dead_letters.reason: long enough for a reply, bounded for the API. */
export const MAX_REASON_CHARS = 1_000;

/** The source of every bounce (INSERT_BOUNCE_SQL writes it): mail Postern originates, unlike the
 *  other relayed deliveries, so the engine signs it (DKIM). Reserved: no token may send as it. */
export const BOUNCE_SOURCE = 'postern-dsn';

const INSERT_BOUNCE_SQL = `
WITH m AS (
  INSERT INTO mail.messages (id, envelope_from, envelope_to, message_id_header, subject, from_header, size_bytes, traceparent)
  VALUES ($1, '', ARRAY[$2]::text[], $3, $4, $5, $6, $9)
  RETURNING id),
p AS (
  INSERT INTO mail.message_payloads (message_id, raw) SELECT m.id, $7 FROM m)
INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id, category,
                             traceparent, status, next_attempt_at)
SELECT $8, 'postern-dsn', 'relay', m.id, $2, '', $3, 'bounce', $9, 'queued', now() FROM m
RETURNING id`;

export interface BounceToStore {
  recipient: string;
  messageIdHeader: string;
  subject: string;
  fromHeader: string;
  raw: Buffer;
  /** The trace of the failure it reports (W3C traceparent), or null. */
  traceparent: string | null;
}

/** Queues `bounce` as a new delivery; returns its id. */
export async function insertBounce(db: Queryable, bounce: BounceToStore): Promise<string> {
  const deliveryId = randomUUID();
  await db.query(INSERT_BOUNCE_SQL, [
    randomUUID(),
    bounce.recipient,
    storableText(bounce.messageIdHeader, { maxChars: 998 }),
    storableText(bounce.subject, { maxChars: 998 }),
    storableText(bounce.fromHeader, { maxChars: 998 }),
    bounce.raw.length,
    bounce.raw,
    deliveryId,
    bounce.traceparent,
  ]);
  return deliveryId;
}

const NOTE_UNBOUNCED_SQL = `
WITH d AS (
  UPDATE mail.deliveries SET last_error = $2 WHERE id = $1 AND status = 'dead_letter' RETURNING id)
UPDATE mail.dead_letters SET reason = $2 WHERE delivery_id IN (SELECT id FROM d)`;

/** A dead letter whose bounce could not be stored: the reason says so (storable, from the caller). */
export async function noteUnbounced(db: Queryable, deliveryId: string, reason: string): Promise<void> {
  await db.query({ name: 'postern_note_unbounced', text: NOTE_UNBOUNCED_SQL, values: [deliveryId, reason] });
}
