// A stream entry's fields as Redis holds them — bytes — turned into text for decoding. Reading them
// as strings let the Redis client replace invalid UTF-8 with U+FFFD without a word, so a producer
// that silently switched to another encoding (silent-encoding-change, docs/incidents.md) would
// have had its mail sent with replacement characters. Here the decoding is strict per field: the
// names of the fields that are not valid UTF-8 are reported, and the caller refuses the command
// (quarantined as invalid_field); the text still gets U+FFFD where the bytes were invalid, so the
// quarantined copy shows where.
const STRICT = new TextDecoder('utf-8', { fatal: true });
const LENIENT = new TextDecoder('utf-8', { fatal: false });

export interface EntryFields {
  /** Each field by name; a name given more than once holds its last value (and is in `repeated`). */
  fields: Record<string, string>;
  /** Names of the fields whose name or value is not valid UTF-8 (as decoded, with U+FFFD). */
  notUtf8: string[];
  /** Names given more than once in the entry (XADD takes them): which value was meant is a guess. */
  repeated: string[];
}

function decode(bytes: Buffer): { text: string; valid: boolean } {
  try {
    return { text: STRICT.decode(bytes), valid: true };
  } catch {
    return { text: LENIENT.decode(bytes), valid: false };
  }
}

export function decodeEntryFields(flat: readonly Buffer[]): EntryFields {
  const fields: Record<string, string> = Object.create(null);
  const notUtf8: string[] = [];
  const repeated: string[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = decode(flat[i] as Buffer);
    const value = decode(flat[i + 1] as Buffer);
    if (name.text in fields && !repeated.includes(name.text)) repeated.push(name.text);
    fields[name.text] = value.text;
    if (!name.valid || !value.valid) notUtf8.push(name.text);
  }
  return { fields, notUtf8, repeated };
}
