// The bytes of a message the edge accepted, read when an attempt needs them (not in the claim: a
// batch of large payloads would all sit in memory at once).
import type { Queryable } from '@postern/shared';

export async function loadMessagePayload(db: Queryable, messageId: string): Promise<{ raw: Buffer; receivedAt: Date } | null> {
  const { rows } = await db.query<{ raw: Buffer; received_at: Date }>({
    name: 'postern_load_payload',
    text: `SELECT p.raw, m.received_at FROM mail.message_payloads p JOIN mail.messages m ON m.id = p.message_id
            WHERE p.message_id = $1`,
    values: [messageId],
  });
  const row = rows[0];
  return row ? { raw: row.raw, receivedAt: row.received_at } : null;
}
