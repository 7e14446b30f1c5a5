// The stream's adapter to the one intake (@postern/shared intakeCommand): a Redis entry's fields, as
// bytes, become a typed DeliveryCommand or a refusal, plus the raw text a quarantine row keeps.
// Decoding is the shared decodeCommand (both schema versions); on top of it, a field whose bytes
// are not UTF-8 refuses the command even where the text would decode (silent-encoding-change,
// docs/incidents.md: never mail sent with replacement characters).
import { type DecodeResult, decodeCommand, decodeFailure } from '@postern/shared';
import { decodeEntryFields } from './entry-fields.ts';

export interface StreamCommand {
  /** The entry's fields as JSON text (invalid bytes as U+FFFD): the quarantined copy. */
  raw: string;
  decoded: DecodeResult;
}

export function decodeStreamEntry(flat: readonly Buffer[]): StreamCommand {
  const { fields, notUtf8 } = decodeEntryFields(flat);
  const raw = JSON.stringify(fields);
  const decoded = decodeCommand(fields);
  if (notUtf8.length === 0) return { raw, decoded };
  const names = notUtf8.map((name) => `"${name}"`).join(', ');
  const known = decoded.ok ? decoded.command : decoded.failure;
  return {
    raw,
    decoded: { ok: false, failure: decodeFailure('invalid_field', `${names} not valid UTF-8 (the invalid bytes are U+FFFD in the raw copy)`, known) },
  };
}
