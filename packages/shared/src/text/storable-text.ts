// Text from outside (SMTP headers and envelopes, stream fields, API input) on its way into a
// PostgreSQL `text` column. PostgreSQL refuses NUL in text and node-postgres cannot send a lone
// surrogate as valid UTF-8, so one hostile byte in a Subject or a stream field would fail the whole
// statement — and with it every batch that statement belonged to. Each boundary decides once:
//   - storableText(): store safely. The raw bytes stay where they are kept as bytes (message
//     payloads are bytea); the text copy is made storable with visible markers: NUL becomes U+2400
//     (SYMBOL FOR NULL), other C0 controls but TAB/CR/LF become U+FFFD, lone surrogates and invalid
//     UTF-8 become U+FFFD, and a value longer than its column's budget is cut with a marker saying
//     how much was cut. A marker is never silent rewriting: a reader sees that something was there.
//   - textProblem(): refuse. For values a person typed that Postern must not reinterpret (names,
//     keys): says what is wrong, or null when the value is storable as it is.

/** Marks where a value was cut: "…[+1234 chars]". */
export function truncationMarker(cutChars: number): string {
  return `…[+${cutChars} chars]`;
}

const CONTROL = /[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;
/** Any C0 control or DEL, line breaks included: a one-line value a person typed has none. */
const ANY_CONTROL = /[\u0001-\u001f\u007f]/;

export interface StorableTextOptions {
  /** Longest value kept, in UTF-16 code units, marker included (default 64 KiB). */
  maxChars?: number;
  /** Keep CR/LF/TAB (a multi-line value such as a raw command); otherwise they become spaces. */
  multiline?: boolean;
}

/** A string any text column accepts, with markers where it had to change (see above). */
export function storableText(value: string, options: StorableTextOptions = {}): string {
  const maxChars = options.maxChars ?? 64 * 1024;
  let text = value.toWellFormed().replaceAll('\u0000', '\u2400').replace(CONTROL, '\ufffd');
  if (!options.multiline) text = text.replace(/[\r\n\t]/g, ' ');
  if (text.length > maxChars) {
    let keep = Math.max(0, maxChars - truncationMarker(text.length).length);
    // Never cut a surrogate pair in half.
    if (keep > 0 && /[\ud800-\udbff]/.test(text.charAt(keep - 1))) keep -= 1;
    text = `${text.slice(0, keep)}${truncationMarker(text.length - keep)}`;
  }
  return text;
}

/** storableText() for nullable values. */
export function storableTextOrNull(value: string | null | undefined, options?: StorableTextOptions): string | null {
  return value === null || value === undefined ? null : storableText(value, options);
}

/** Bytes from outside as text: invalid UTF-8 sequences become U+FFFD, then storableText(). */
export function storableTextFromBytes(bytes: Uint8Array, options?: StorableTextOptions): string {
  return storableText(new TextDecoder('utf-8', { fatal: false }).decode(bytes), options);
}

/** Why no text column can store a value as it is (NUL, lone surrogate), or null: the refusal for
 *  multi-line content (a message body, a template variable) where controls and line breaks are fine. */
export function storageProblem(value: string): string | null {
  if (value.includes('\u0000')) return 'contains a NUL character';
  if (!value.isWellFormed()) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  return null;
}

/** Why a value cannot be stored as it is (for boundaries that refuse rather than mark), or null. */
export function textProblem(value: string, maxChars: number): string | null {
  const problem = storageProblem(value);
  if (problem) return problem;
  if (ANY_CONTROL.test(value)) return 'contains a control character or line break';
  if (value.length > maxChars) return `is ${value.length} characters long; at most ${maxChars} are allowed`;
  return null;
}
