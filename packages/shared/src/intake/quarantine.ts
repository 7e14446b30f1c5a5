// Quarantine: a command that cannot be accepted is stored with why, counted by the caller, and then
// acknowledged — never dropped silently (silent-encoding-change, docs/incidents.md), never retried forever at the head of the stream.
// What is quarantined is by definition what could not be trusted: every text value goes through
// storableText() (NUL, lone surrogates, controls and oversize marked, never silently dropped), or a
// NUL in a `source` fails this very insert and the entry comes back forever.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { storableText, storableTextOrNull } from '../text/storable-text.ts';
import type { DecodeFailure } from './delivery-command.ts';

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
    storableText(failure.detail, { maxChars: 2_000 }),
    storableTextOrNull(failure.schemaVersion, { maxChars: 50 }),
    storableTextOrNull(failure.source, { maxChars: 200 }),
    storableTextOrNull(failure.deliveryId, { maxChars: 200 }),
    storableText(origin.raw, { multiline: true, maxChars: MAX_RAW_CHARS }),
  ]);
  return String(rows[0]?.id);
}
