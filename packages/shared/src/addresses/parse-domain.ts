/// <reference path="../types/tr46.d.ts" />
// A domain name as Postern stores and looks it up: the A-label form UTS #46 (IDNA) defines, or a
// refusal that names the label, the character or the limit. Measured before: node's URL host rules
// (domainToASCII) percent-decoded `ev%69l.test` to `evil.test`, dropped CR/LF from `ev\r\nil.test`
// and cut `example.test/x` to `example.test` — three different names silently stored as another.
// tr46 decides (strict UTS #46: STD3 ASCII rules, hyphen, joiner and bidi checks, DNS lengths,
// nontransitional so `faß.de` stays itself); the code here only explains a refusal and adds what
// SMTP asks beyond IDNA (RFC 5321 2.3.5: fully qualified names only).
import tr46 from 'tr46';
import { InvalidAddressError } from './invalid-address-error.ts';

const STRICT = {
  checkHyphens: true,
  checkBidi: true,
  checkJoiners: true,
  useSTD3ASCIIRules: true,
  verifyDNSLength: true,
  transitionalProcessing: false,
} as const;

/** RFC 1035 2.3.4: 63 octets a label, 255 octets a name on the wire, so 253 written with dots. */
export const MAX_LABEL_OCTETS = 63;
export const MAX_DOMAIN_OCTETS = 253;
/** Work is bounded before any parsing: nothing longer can become a valid name. */
const MAX_INPUT_CHARS = 1024;

/** What UTS #46 maps to FULL STOP (U+3002, U+FF0E, U+FF61 and "." itself) separates labels. */
const LABEL_SEPARATOR = /[.\u3002\uff0e\uff61]/;

/** `"x" (U+0078)` for a visible character, `U+000D` for one that is not. */
export function describeCharacter(char: string): string {
  const code = `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(char) ? `"${char}" (${code})` : code;
}

function labelProblem(label: string, position: number): string | null {
  const name = `label ${position} ${JSON.stringify(label)}`;
  if (label === '') return `label ${position} is empty (a leading dot or two dots in a row)`;
  for (const char of label) {
    if (char <= '\u007f') {
      if (!/[A-Za-z0-9-]/.test(char)) {
        return `${describeCharacter(char)} in ${name} is not allowed in a domain name (letters, digits and hyphens only)`;
      }
    } else {
      const probe = tr46.toASCII(`a${char}`, { useSTD3ASCIIRules: true });
      if (probe === null) return `${describeCharacter(char)} in ${name} is not allowed by IDNA (UTS #46)`;
      if (probe === 'a') return `${describeCharacter(char)} in ${name} is invisible (UTS #46 would drop it); refused rather than removed`;
    }
  }
  const lower = label.toLowerCase();
  if (lower.startsWith('-') || lower.endsWith('-')) return `${name} starts or ends with a hyphen`;
  const ascii = tr46.toASCII(label, { ...STRICT, checkBidi: false, verifyDNSLength: false });
  if (ascii === null) {
    if (lower.startsWith('xn--')) return `${name} is not a valid A-label (its punycode does not decode to a valid U-label)`;
    if (lower.slice(2, 4) === '--') return `${name} has "--" in its 3rd and 4th characters, reserved for encoded labels (RFC 5891 4.2.3.1)`;
    return `${name} is not a valid IDNA label (UTS #46)`;
  }
  const octets = Buffer.byteLength(ascii);
  if (octets > MAX_LABEL_OCTETS) {
    const form = ascii === lower ? '' : ` (as the A-label ${ascii})`;
    return `${name} is ${octets} octets${form}; at most ${MAX_LABEL_OCTETS} are allowed (RFC 1035 2.3.4)`;
  }
  return null;
}

function hasIgnoredCodePoint(name: string): boolean {
  for (const char of name) {
    if (char > '\u007f' && tr46.toASCII(`a${char}`) === 'a') return true;
  }
  return false;
}

/** Why tr46 refused, as precisely as can be said. */
function explainRefusal(name: string): string {
  const labels = name.split(LABEL_SEPARATOR);
  for (const [index, label] of labels.entries()) {
    const problem = labelProblem(label, index + 1);
    if (problem) return problem;
  }
  const ascii = tr46.toASCII(name, { ...STRICT, checkBidi: false, verifyDNSLength: false });
  if (ascii !== null && ascii.length > MAX_DOMAIN_OCTETS) {
    return `the domain is ${ascii.length} octets as A-labels; at most ${MAX_DOMAIN_OCTETS} are allowed (RFC 1035 2.3.4)`;
  }
  return 'not a valid internationalised domain name (UTS #46; e.g. its right-to-left labels break RFC 5893)';
}

/** An LDH label of 1 to 63 characters, no hyphen at either end (RFC 5890 2.3.1, RFC 1035 2.3.4). */
const PLAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const NUMERIC = /^[0-9]+$/;

/**
 * The A-label form of a plain ASCII domain — LDH labels, none of them an encoded (`xn--`) or
 * reserved (`??--`) one, a top-level label of two or more characters that is not all digits —
 * worked out directly: lower case, one root dot dropped. On those inputs UTS #46 is the identity up
 * to case and nothing is refused, so the result is parseDomainInFull's (asserted over generated and
 * hostile inputs by normalize-address.property.test.ts). null: anything else, which the full parse
 * then decides, refusal and its reason included. It exists because tr46 was, per message, a cost
 * of its own wherever a domain is normalised on a hot path (an RCPT at the edge, the From domain
 * of every message the engine signs).
 */
export function plainAsciiDomain(input: string): string | null {
  const name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (name.length > MAX_DOMAIN_OCTETS) return null;
  const labels = name.split('.');
  if (labels.length < 2) return null;
  for (const label of labels) {
    if (!PLAIN_LABEL.test(label) || (label[2] === '-' && label[3] === '-')) return null;
  }
  const top = labels[labels.length - 1] as string;
  if (top.length < 2 || NUMERIC.test(top)) return null;
  return name.toLowerCase();
}

/**
 * The A-label form of a domain name (ASCII, lower case), or InvalidAddressError naming the problem.
 * One trailing dot (the DNS root, same name) is accepted; nothing else is removed or decoded.
 */
export function parseDomain(input: string): string {
  return plainAsciiDomain(input) ?? parseDomainInFull(input);
}

/** The full parse: any input, refused with the reason (exported for the fast path's property test). */
export function parseDomainInFull(input: string): string {
  const refuse = (reason: string): never => {
    throw new InvalidAddressError(input, reason, 'domain');
  };
  if (input === '') refuse('empty domain');
  if (input.length > MAX_INPUT_CHARS) refuse(`longer than ${MAX_INPUT_CHARS} characters`);
  if (!input.isWellFormed()) refuse('contains a lone UTF-16 surrogate (not valid Unicode)');
  if (input.startsWith('[')) refuse('address literals are not accepted');
  const name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (name === '') refuse('empty domain');
  // UTS #46 maps some code points to nothing (soft hyphen, zero-width space, variation selectors):
  // `ev\u00adil.test` would quietly become `evil.test`. Those are refused, with the label named.
  const ascii = hasIgnoredCodePoint(name) ? null : tr46.toASCII(name, STRICT);
  if (ascii === null) return refuse(explainRefusal(name));
  const labels = ascii.split('.');
  const top = labels[labels.length - 1] as string;
  if (labels.length < 2) refuse(`${JSON.stringify(ascii)} is not fully qualified (RFC 5321 2.3.5 wants a name with a dot)`);
  if (/^[0-9]+$/.test(top)) refuse(`top-level label ${JSON.stringify(top)} is numeric: an IP address is not a domain name`);
  if (top.length < 2) refuse(`top-level label ${JSON.stringify(top)} is shorter than 2 characters`);
  return ascii;
}
