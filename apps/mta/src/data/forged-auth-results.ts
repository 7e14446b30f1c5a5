// RFC 8601 5: a border MTA MUST delete the Authentication-Results fields of a message that appear
// to have been added by its own ADMD, so that a reader trusting our authserv-id (a mailbox's filter,
// a ticket system behind an alias) reads only what this edge wrote. Without it a sender writes
// "Authentication-Results: <our name>; dmarc=pass" into its message and it is stored and relayed
// under ours, and every reader that does not look at the topmost field only is fooled.
//
// A field is ours when its authserv-id equals the edge's own (verdicts.ts authservId), compared
// without regard to case, read either way a reader reads it: as RFC 8601 2.2 has it (after white
// space and comments, which nest: a token, or a quoted-string with its quoted-pairs undone), or as
// lenient readers do (mailauth's parser among them): the first ";"-separated part without "=", its
// comments dropped, backslashes undone, white space collapsed; so "mx.ours\.test",
// "mx.ours(x).test" and "dmarc=pass; mx.ours.test" count too. The value is read as UTF-8 (RFC 6532).
// The field is deleted whole, its folded continuation lines with it; its name is read as mailsplit
// (mailparser) reads it: what precedes the first colon, trimmed, any case ("Authentication-Results :"
// and a name folded before its colon count). Everything else stays byte for byte: other
// authserv-ids, ARC-Authentication-Results (part of a sealed ARC set, RFC 8617: removing one would
// break the chain, and its i= says whose it is), look-alikes in the body.
//
// The header block is all of it, up to the first empty line (the collector has bounded it at
// MAIL_MTA_MAX_HEADER_SIZE), since a reader further on reads all of it. The collector refuses bare
// CR and LF, so every line of a kept message ends in CRLF.

export interface FieldRange {
  /** Offset of the field's first byte. */
  start: number;
  /** Offset past the CRLF of its last (continuation) line. */
  end: number;
}

const CR = 0x0d;
const LF = 0x0a;
const HEADER_END = Buffer.from('\r\n\r\n');
/** RFC 2045 tspecials: with SPACE and the controls, what ends a token. */
const TSPECIALS = new Set('()<>@,;:\\"/[]?='.split(''));

/** Where the header block ends: past the CRLF of its last line (0 when the message opens with an empty line). */
function headerBlockEnd(data: Buffer): number {
  if (data[0] === CR && data[1] === LF) return 0;
  const end = data.indexOf(HEADER_END);
  return end === -1 ? data.length : end + 2;
}

/** Past the comment that opens at `at` (RFC 5322 3.2.2: nested, with quoted-pairs); the end if it never closes. */
function afterComment(value: string, at: number): number {
  let depth = 0;
  for (let i = at; i < value.length; i++) {
    const char = value[i];
    if (char === '\\') i++;
    else if (char === '(') depth++;
    else if (char === ')' && --depth === 0) return i + 1;
  }
  return value.length;
}

function isTokenChar(char: string): boolean {
  const code = char.charCodeAt(0);
  // 8-bit bytes (RFC 6532 allows UTF-8 here) belong to the token: "name\xC3\xA9" is another name.
  return code > 0x20 && code !== 0x7f && !TSPECIALS.has(char);
}

/** The authserv-id of an unfolded field value as RFC 8601 2.2 reads it, or null when it has none. */
export function authservIdOf(value: string): string | null {
  let at = 0;
  while (at < value.length) {
    if (value[at] === ' ' || value[at] === '\t') at++;
    else if (value[at] === '(') at = afterComment(value, at);
    else break;
  }
  if (value[at] === '"') {
    // A quoted-string; one left open is read to the end, as a lenient reader would.
    let id = '';
    for (at++; at < value.length && value[at] !== '"'; at++) {
      if (value[at] === '\\' && at + 1 < value.length) at++;
      id += value[at];
    }
    return id;
  }
  let end = at;
  while (end < value.length && isTokenChar(value[end]!)) end++;
  return end > at ? value.slice(at, end) : null;
}

/** The authserv-id as lenient readers take it: the first part without "=" (see the top). */
export function lenientAuthservIdOf(value: string): string | null {
  let part = '';
  let hasValue = false;
  for (let at = 0; at <= value.length; at++) {
    const char = value[at];
    if (char === undefined || char === ';') {
      const key = part.replace(/\s+/g, ' ').trim();
      if (key !== '' && !hasValue) return key;
      part = '';
      hasValue = false;
    } else if (char === '(') at = afterComment(value, at) - 1;
    else if (char === '\\') {
      // The next character as it is (a backslash at the very end is dropped).
      if (at + 1 < value.length) {
        at++;
        if (!hasValue) part += value[at];
      }
    } else if (char === '=') hasValue = true;
    else if (char === '"') {
      // Kept as written, quotes and quoted-pairs included: never equal to a name.
      const close = closingQuote(value, at);
      if (!hasValue) part += value.slice(at, close + 1);
      at = Math.min(close, value.length - 1);
    } else if (!hasValue) part += char;
  }
  return null;
}

function closingQuote(value: string, at: number): number {
  for (let i = at + 1; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === '"') return i;
  }
  return value.length;
}

/** Whether a field value (what follows the colon, folds included) names `authservId`, either way it is read. */
export function claimsAuthservId(value: string, authservId: string): boolean {
  const unfolded = value.replace(/\r\n(?=[ \t])/g, '');
  const ours = authservId.toLowerCase();
  return authservIdOf(unfolded)?.toLowerCase() === ours || lenientAuthservIdOf(unfolded)?.toLowerCase() === ours;
}

/** Where the field around `at` starts: the line that is not folded under the one before it. */
function fieldStart(block: string, at: number): number {
  let lineEnd = block.lastIndexOf('\r\n', at);
  while (lineEnd > 0 && (block[lineEnd + 2] === ' ' || block[lineEnd + 2] === '\t')) lineEnd = block.lastIndexOf('\r\n', lineEnd - 1);
  return lineEnd === -1 || block[lineEnd + 2] === ' ' || block[lineEnd + 2] === '\t' ? 0 : lineEnd + 2;
}

/** Past the CRLF of the field's last line: it goes on while the next line starts with SP or HTAB. */
function fieldEnd(block: string, at: number): number {
  let lineEnd = block.indexOf('\r\n', at);
  while (lineEnd !== -1 && (block[lineEnd + 2] === ' ' || block[lineEnd + 2] === '\t')) lineEnd = block.indexOf('\r\n', lineEnd + 2);
  return lineEnd === -1 ? block.length : lineEnd + 2;
}

/** The Authentication-Results fields of the message's header block that name `authservId`, in order. */
export function forgedAuthResults(data: Buffer, authservId: string): FieldRange[] {
  const blockEnd = headerBlockEnd(data);
  if (blockEnd === 0) return [];
  // latin1: one character per byte, so string offsets are byte offsets (and the field name is
  // read from it as mailsplit reads it).
  const block = data.toString('latin1', 0, blockEnd);
  const fields: FieldRange[] = [];
  // Looked for as a word first: most messages have no such field, and then no line is looked at.
  const name = /authentication-results/gi;
  for (let match = name.exec(block); match !== null; match = name.exec(block)) {
    const start = fieldStart(block, match.index);
    const end = fieldEnd(block, match.index);
    name.lastIndex = end;
    // The name as readers take it (mailsplit's Headers): up to the first colon, folds included,
    // white space around it trimmed, any case.
    const colon = block.indexOf(':', start);
    if (colon === -1 || colon >= end || block.slice(start, colon).trim().toLowerCase() !== 'authentication-results') continue;
    const valueEnd = block[end - 1] === '\n' ? end - 2 : end;
    if (claimsAuthservId(data.toString('utf8', colon + 1, valueEnd), authservId)) fields.push({ start, end });
  }
  return fields;
}

/**
 * `message` without the `fields` (ranges of its part from `offset` on, in order, not overlapping),
 * done in place: what precedes the last field moves forward over the gaps, and the result is a view
 * from the first byte still used. Only the header bytes before the last field are copied, never the
 * body, and nothing is allocated: `message` is the edge's one copy of the message (takeMessage) and
 * must not be read as it was afterwards.
 */
export function withoutFields(message: Buffer, offset: number, fields: readonly FieldRange[]): Buffer {
  let to = offset + (fields.at(-1)?.end ?? 0);
  for (let i = fields.length - 1; i >= 0; i--) {
    const keptFrom = i === 0 ? 0 : offset + fields[i - 1]!.end;
    const keptTo = offset + fields[i]!.start;
    to -= keptTo - keptFrom;
    message.copyWithin(to, keptFrom, keptTo);
  }
  return fields.length === 0 ? message : message.subarray(to);
}
