// Quarantine: a command that cannot be accepted is stored with why, counted by the caller, and then
// acknowledged — never dropped silently (seed 003), never retried forever at the head of the stream.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import type { DecodeFailure } from './decode-command.ts';

export type CommandChannel = 'stream' | 'api' | 'smtp';

/** Enough of the raw command to diagnose it, bounded so one huge entry cannot bloat the table. */
const MAX_RAW_CHARS = 64 * 1024;

const INSERT_MALFORMED = `
INSERT INTO mail.malformed_commands (channel, stream_entry_id, failure_code, failure_detail, schema_version, source,
                                     delivery_id, raw)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id`;

export async function quarantineCommand(
  db: Queryable,
  origin: { channel: CommandChannel; streamEntryId: string | null; raw: string },
  failure: DecodeFailure,
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(INSERT_MALFORMED, [
    origin.channel,
    origin.streamEntryId,
    failure.code,
    failure.detail.slice(0, 2_000),
    failure.schemaVersion?.slice(0, 50) ?? null,
    failure.source?.slice(0, 200) ?? null,
    failure.deliveryId?.slice(0, 200) ?? null,
    origin.raw.length > MAX_RAW_CHARS ? `${origin.raw.slice(0, MAX_RAW_CHARS)}…[truncated]` : origin.raw,
  ]);
  return String(rows[0]?.id);
}
