// A bounce (RFC 3464 DSN, built by delivery/bounce.ts) is itself a relayed message: stored like mail
// the edge accepted — messages, payload, one delivery — and sent by the same queue with the null
// reverse-path (RFC 5321 4.5.5: a bounce is sent from <>, so it can never bounce back). Inserted
// in the same transaction as the failure it reports: the failure and its notice commit together.
// The text columns get storableText() whatever the caller built: the bounce quotes a Subject from
// outside, and one NUL in it used to fail the failure's whole batch (and then the reclaim, forever).
import { randomUUID } from 'node:crypto';
import { type Queryable, storableText } from '@postern/shared';

const INSERT_BOUNCE_SQL = `
WITH m AS (
  INSERT INTO mail.messages (id, envelope_from, envelope_to, message_id_header, subject, from_header, size_bytes)
  VALUES ($1, '', ARRAY[$2]::text[], $3, $4, $5, $6)
  RETURNING id),
p AS (
  INSERT INTO mail.message_payloads (message_id, raw) SELECT m.id, $7 FROM m)
INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id, category,
                             status, next_attempt_at)
SELECT $8, 'postern-dsn', 'relay', m.id, $2, '', $3, 'bounce', 'queued', now() FROM m
RETURNING id`;

export interface BounceToStore {
  recipient: string;
  messageIdHeader: string;
  subject: string;
  fromHeader: string;
  raw: Buffer;
}

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
  ]);
  return deliveryId;
}
