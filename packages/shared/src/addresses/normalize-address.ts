// One normal form for addresses, used for lookups and for uniqueness alike (stale-alias-table: an address
// must mean the same thing on every path). Parsed, never repaired: an input either is an RFC 5321
// mailbox (RFC 6531 for UTF-8 local parts) with a UTS #46 domain, or it is refused with the reason.
// The normal form differs from the input only by what does not change its meaning: case folded
// (RFC 5321 lets a server treat local parts case-sensitively; in practice every mailbox provider
// folds case, and two aliases differing only in case are a trap), a UTF-8 local part in Unicode
// NFC (RFC 6532 3.1; `jörg` written with a combining diaeresis is the same mailbox, and was not
// suppressed when the precomposed one was), the domain in A-labels (UTS #46 maps to NFC itself),
// one trailing root dot dropped. Not folded: `+tags`, dots and quoting (quoted local parts are
// refused), which only the receiving domain may interpret.
//
// Grammar: smtp-address-parser (RFC 5321 4.1.2 Mailbox, a nearley grammar) has the last word on
// syntax; an RFC 5322 parser would admit comments and folding, which have no place in an envelope
// or an API argument. The checks before it exist to name a refusal precisely.
import smtpAddressParser from 'smtp-address-parser';
import { InvalidAddressError } from './invalid-address-error.ts';
import { describeCharacter, parseDomain, plainAsciiDomain } from './parse-domain.ts';

export { InvalidAddressError } from './invalid-address-error.ts';

export interface NormalizedAddress {
  localPart: string;
  domain: string;
  address: string;
}

/** RFC 5321 4.5.3.1.1. */
export const MAX_LOCAL_PART_OCTETS = 64;
/** RFC 5321 4.5.3.1.3: a path is at most 256 octets including "<" and ">" (RFC 3696 erratum 1690). */
export const MAX_ADDRESS_OCTETS = 254;
const MAX_INPUT_CHARS = 1024;

/** RFC 5322 3.2.3 atext, the ASCII an unquoted local part may use. */
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;
/** RFC 6531 allows any UTF-8 beyond ASCII; controls, format and separator characters, private-use
 *  and unassigned code points are refused here: they only ever serve to make two addresses look alike. */
const UNSAFE_NON_ASCII = /^[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Z}]$/u;

function localPartProblem(input: string): string | null {
  if (input === '') return 'empty local part';
  if (!input.isWellFormed()) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  if (input.startsWith('"')) return 'quoted local parts are not accepted (RFC 5321 4.1.2: a receiver SHOULD avoid them)';
  // Measured as written in NFC and as stored: lower-casing can lengthen a non-ASCII local part
  // (U+0130 -> i + U+0307); a decomposed input is measured as the composed form it stands for.
  const octets = Math.max(Buffer.byteLength(input.normalize('NFC'), 'utf8'), Buffer.byteLength(storedLocalPart(input), 'utf8'));
  if (octets > MAX_LOCAL_PART_OCTETS) return `local part is ${octets} octets; at most ${MAX_LOCAL_PART_OCTETS} are allowed (RFC 5321 4.5.3.1.1)`;
  if (input.startsWith('.')) return 'local part starts with a dot';
  if (input.endsWith('.')) return 'local part ends with a dot';
  if (input.includes('..')) return 'local part has two dots in a row';
  let position = 0;
  for (const char of input) {
    position += 1;
    const allowed = char === '.' || (char <= '\u007f' ? ATEXT.test(char) : !UNSAFE_NON_ASCII.test(char));
    if (!allowed) return `${describeCharacter(char)} at position ${position} of the local part is not allowed unquoted (RFC 5321 4.1.2)`;
  }
  return null;
}

/** Lower case, then NFC (lower-casing composed text need not leave it composed). */
function storedLocalPart(input: string): string {
  const lower = input.toLowerCase();
  return /[^\x00-\x7f]/.test(lower) ? lower.normalize('NFC') : lower;
}

/** A local part as stored and compared: checked, then lower-cased and put in NFC. */
export function normalizeLocalPart(input: string): string {
  const problem = localPartProblem(input);
  if (problem) throw new InvalidAddressError(input, problem, 'local part');
  return storedLocalPart(input);
}

/** A domain as stored and compared: its A-label form (parse-domain.ts). */
export function normalizeDomain(input: string): string {
  return parseDomain(input);
}

/** The library's verdict on the whole mailbox, in words a person can act on. */
function grammarProblem(mailbox: string): string | null {
  try {
    smtpAddressParser.parse(mailbox);
    return null;
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    const column = /col (\d+)/.exec(text);
    if (column) {
      const index = Number(column[1]) - 1;
      const char = String.fromCodePoint(mailbox.codePointAt(index) ?? 0);
      return `${describeCharacter(char)} at position ${index + 1} does not fit the RFC 5321 Mailbox grammar`;
    }
    return `not an RFC 5321 mailbox (${text.split('\n')[0]})`;
  }
}

/** RFC 5321 Dot-string of ASCII atext: what nearly every address on the wire is. */
const PLAIN_LOCAL_PART = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$/;

/**
 * The normal form of a plain ASCII address — a dot-atom local part at a plain ASCII domain (LDH
 * labels, none of them an encoded `xn--` or reserved `??--` one: plainAsciiDomain) — worked out
 * directly: lower case, one root dot dropped. Those are the inputs on which UTS #46 is the identity up to case and the grammar has
 * nothing to refuse that the checks here do not, so the result is the full parser's (asserted over
 * generated and hostile inputs by normalize-address.property.test.ts). null: anything else, which
 * normalizeAddress then parses in full, refusal and its reason included. It exists because the full
 * parse (a nearley grammar and tr46) was the edge's largest single cost per RCPT.
 */
export function plainAsciiAddress(input: string): NormalizedAddress | null {
  const at = input.lastIndexOf('@');
  if (at <= 0 || at > MAX_LOCAL_PART_OCTETS) return null;
  const rawLocal = input.slice(0, at);
  if (!PLAIN_LOCAL_PART.test(rawLocal)) return null;
  const domain = plainAsciiDomain(input.slice(at + 1));
  if (domain === null) return null;
  const localPart = rawLocal.toLowerCase();
  const address = `${localPart}@${domain}`;
  // ASCII: characters are octets. Within 254, the domain is within its 253 too.
  if (address.length > MAX_ADDRESS_OCTETS) return null;
  return { localPart, domain, address };
}

export function normalizeAddress(input: string): NormalizedAddress {
  return plainAsciiAddress(input) ?? parseAddressInFull(input);
}

/** The full parse: any input, refused with the reason (exported for the fast path's property test). */
export function parseAddressInFull(input: string): NormalizedAddress {
  if (input.length > MAX_INPUT_CHARS) throw new InvalidAddressError(input, `longer than ${MAX_INPUT_CHARS} characters`);
  const at = input.lastIndexOf('@');
  if (at <= 0 || at === input.length - 1) throw new InvalidAddressError(input, 'expected local-part@domain');
  const rawLocal = input.slice(0, at);
  const localPart = normalizeLocalPart(rawLocal);
  const domain = parseDomain(input.slice(at + 1));
  const problem = grammarProblem(`${rawLocal}@${domain}`);
  if (problem) throw new InvalidAddressError(input, problem);
  const address = `${localPart}@${domain}`;
  const octets = Buffer.byteLength(address, 'utf8');
  if (octets > MAX_ADDRESS_OCTETS) {
    throw new InvalidAddressError(input, `address is ${octets} octets; at most ${MAX_ADDRESS_OCTETS} are allowed (RFC 5321 4.5.3.1.3)`);
  }
  return { localPart, domain, address };
}

/** True when the address needs SMTPUTF8 (RFC 6531) to be carried: a non-ASCII local part. */
export function needsSmtpUtf8(localPart: string): boolean {
  return /[^\x00-\x7f]/.test(localPart);
}
