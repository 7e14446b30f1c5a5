// The bytes of a message the edge accepted: not a status change, but read by two of them — the
// attempt that relays it, and the bounce that quotes its headers when it fails for good. Read when
// needed, not in the claim: a batch of large payloads would all sit in memory at once.
import type { Queryable } from '../aliases/index.ts';

export interface MessagePayload {
  raw: Buffer;
  receivedAt: Date;
  /** The recipients the edge accepted, normalised: forwarded mail's SRS and ARC domain is the first one's. */
  envelopeTo: string[];
}

export async function loadMessagePayload(db: Queryable, messageId: string): Promise<MessagePayload | null> {
  const { rows } = await db.query<{ raw: Buffer; received_at: Date; envelope_to: string[] }>({
    name: 'postern_load_payload',
    text: `SELECT p.raw, m.received_at, m.envelope_to FROM mail.message_payloads p JOIN mail.messages m ON m.id = p.message_id
            WHERE p.message_id = $1`,
    values: [messageId],
  });
  const row = rows[0];
  return row ? { raw: row.raw, receivedAt: row.received_at, envelopeTo: row.envelope_to } : null;
}
