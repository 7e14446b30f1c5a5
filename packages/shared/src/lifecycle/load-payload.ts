// The bytes of a message the edge accepted: not a status change, but read by two of them — the
// attempt that relays it, and the bounce that quotes its headers when it fails for good. Read when
// needed, not in the claim: a batch of large payloads would all sit in memory at once.
// The bytes are read a slice at a time into one buffer of their size. node-postgres reads a bytea
// in the text format, as hex: read whole, a message of 25 MiB came as a 50 MiB protocol message in
// a buffer grown by doubling, then a 50 MiB JS string on V8's heap, then the 25 MiB buffer — about
// 165 MiB of peak growth for one message, and a heap limit (--max-old-space-size) reached by a few
// such loads at once. Its binary format is no way out: it decodes every field as UTF-8 text first,
// so any byte that is not valid UTF-8 comes back as U+FFFD. A slice of 1 MiB costs 2 MiB of hex at
// most, and the whole read took less time than the one statement (docs/core.md, "Large messages").
// A payload is never changed once stored, so slices read by separate statements are one message;
// one purged meanwhile (retention) is gone, as if it had been gone at the first statement.
import type { Queryable } from '../aliases/index.ts';

export interface MessagePayload {
  raw: Buffer;
  receivedAt: Date;
  /** The recipients the edge accepted, normalised: forwarded mail's SRS and ARC domain is the first one's. */
  envelopeTo: string[];
}

/** The most bytes of a payload one statement reads. */
export const PAYLOAD_SLICE_BYTES = 1024 * 1024;

export interface PayloadReadOptions {
  /** Called with the payload's size before any of its bytes are read; the read waits for it (the
   *  engine's memory budget for payloads in flight, apps/core delivery/payload-holds.ts). */
  beforeRead?(sizeBytes: number): Promise<void>;
}

export async function loadMessagePayload(db: Queryable, messageId: string, options: PayloadReadOptions = {}): Promise<MessagePayload | null> {
  // octet_length of a stored bytea reads its TOAST header, not its bytes.
  const { rows } = await db.query<{ received_at: Date; envelope_to: string[]; size_bytes: number }>({
    name: 'postern_load_payload',
    text: `SELECT m.received_at, m.envelope_to, octet_length(p.raw) AS size_bytes FROM mail.message_payloads p JOIN mail.messages m ON m.id = p.message_id
            WHERE p.message_id = $1`,
    values: [messageId],
  });
  const row = rows[0];
  if (!row) return null;
  await options.beforeRead?.(row.size_bytes);
  const raw = await readPayloadBytes(db, messageId, row.size_bytes);
  return raw ? { raw, receivedAt: row.received_at, envelopeTo: row.envelope_to } : null;
}

/** The payload's `sizeBytes` bytes, slice by slice; null if it was purged meanwhile. */
async function readPayloadBytes(db: Queryable, messageId: string, sizeBytes: number): Promise<Buffer | null> {
  const raw = Buffer.allocUnsafe(sizeBytes);
  for (let offset = 0; offset < sizeBytes; offset += PAYLOAD_SLICE_BYTES) {
    const { rows } = await db.query<{ part: Buffer }>({
      name: 'postern_load_payload_slice',
      text: 'SELECT substring(raw FROM $2 FOR $3) AS part FROM mail.message_payloads WHERE message_id = $1',
      values: [messageId, offset + 1, PAYLOAD_SLICE_BYTES],
    });
    const part = rows[0]?.part;
    if (!part) return null;
    if (part.length !== Math.min(PAYLOAD_SLICE_BYTES, sizeBytes - offset)) throw new Error(`payload of message ${messageId}: slice at ${offset} is ${part.length} bytes`);
    part.copy(raw, offset);
  }
  return raw;
}
