// The stream's adapter to the one intake (@postern/shared intakeCommand): a Redis entry's fields, as
// bytes, become a typed DeliveryCommand or a refusal, plus the raw text a quarantine row keeps.
// Decoding is the shared decodeCommand (both schema versions); on top of it, a field whose bytes
// are not UTF-8 refuses the command even where the text would decode (silent-encoding-change,
// docs/incidents.md: never mail sent with replacement characters), and so does a field name given
// twice (`XADD ... recipient a@x recipient b@y`): Redis keeps both, clients disagree on which one
// counts, and a command is refused rather than sent on a guess.
import { type DecodeResult, decodeCommand, decodeFailure } from '@postern/shared';
import { decodeEntryFields } from './entry-fields.ts';

export interface StreamCommand {
  /** The entry's fields as JSON text (invalid bytes as U+FFFD): the quarantined copy. */
  raw: string;
  decoded: DecodeResult;
}

export function decodeStreamEntry(flat: readonly Buffer[]): StreamCommand {
  const { fields, notUtf8, repeated } = decodeEntryFields(flat);
  const raw = JSON.stringify(fields);
  const decoded = decodeCommand(fields);
  if (notUtf8.length === 0 && repeated.length === 0) return { raw, decoded };
  const known = decoded.ok ? decoded.command : decoded.failure;
  const quoted = (names: string[]) => names.map((name) => `"${name.slice(0, 40)}"`).join(', ');
  const detail =
    notUtf8.length > 0
      ? `${quoted(notUtf8)} not valid UTF-8 (the invalid bytes are U+FFFD in the raw copy)`
      : `${quoted(repeated)} given more than once (the raw copy holds the last value)`;
  return { raw, decoded: { ok: false, failure: decodeFailure('invalid_field', detail, known) } };
}
