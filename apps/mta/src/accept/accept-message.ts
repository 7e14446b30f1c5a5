// The one transaction behind "250 queued": the message, its raw bytes, and one delivery per
// expanded target, all or nothing. It is a single statement (data-modifying CTEs), so it commits
// or fails as one with a single round trip; the edge answers 250 only after it returned. The
// deliveries' insert trigger NOTIFYs mail_delivery_due on commit, so an idle engine starts at once.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '@postern/shared';

export interface MessageToAccept {
  /** '' for the null reverse-path. */
  envelopeFrom: string;
  /** The recipients as accepted at RCPT, normalised. */
  envelopeTo: readonly string[];
  /** Distinct target addresses the recipients expanded to: one delivery each. */
  targets: readonly string[];
  clientAddress: string | null;
  clientHostname: string | null;
  helo: string | null;
  smtpUtf8: boolean;
  messageIdHeader: string | null;
  subject: string | null;
  fromHeader: string | null;
  /** Bytes received in DATA (without the trace header). */
  sizeBytes: number;
  /** What is stored: the trace header followed by the bytes received. */
  raw: Buffer;
}

export interface AcceptedMessage {
  messageId: string;
  deliveryIds: string[];
}

const ACCEPT_SQL = `
WITH m AS (
  INSERT INTO mail.messages (id, envelope_from, envelope_to, client_address, client_hostname, helo, smtputf8,
                             message_id_header, subject, from_header, size_bytes)
  VALUES ($1, $2, $3::text[], $4::inet, $5, $6, $7, $8, $9, $10, $11)
  RETURNING id),
p AS (
  INSERT INTO mail.message_payloads (message_id, raw) SELECT m.id, $12 FROM m),
d AS (
  INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id,
                               status, next_attempt_at)
  SELECT u.id, 'smtp', 'relay', m.id, u.recipient, $2, u.rfc_message_id, 'queued', now()
    FROM m, unnest($13::uuid[], $14::text[], $15::text[]) AS u(id, recipient, rfc_message_id)
  RETURNING id)
SELECT (SELECT count(*) FROM d)::int AS deliveries`;

/** Allocates the ids (message, deliveries, one stable Message-ID per delivery) and commits. */
export async function acceptMessage(db: Queryable, message: MessageToAccept, hostname: string): Promise<AcceptedMessage> {
  if (message.targets.length === 0) throw new Error('acceptMessage: a message needs at least one target');
  const messageId = randomUUID();
  const deliveryIds = message.targets.map(() => randomUUID());
  const rfcMessageIds = deliveryIds.map((id) => `<${id}@${hostname}>`);
  await db.query({
    name: 'postern_accept_message',
    text: ACCEPT_SQL,
    values: [
      messageId,
      message.envelopeFrom,
      message.envelopeTo,
      message.clientAddress,
      message.clientHostname,
      message.helo,
      message.smtpUtf8,
      message.messageIdHeader,
      message.subject,
      message.fromHeader,
      message.sizeBytes,
      message.raw,
      deliveryIds,
      message.targets,
      rfcMessageIds,
    ],
  });
  return { messageId, deliveryIds };
}
