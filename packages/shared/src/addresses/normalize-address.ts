// One normal form for addresses, used for lookups and for uniqueness alike (seed 000: an address
// must mean the same thing on every path). Domain: ASCII (IDNA/punycode), lower case, no trailing
// dot. Local part: lower case. RFC 5321 lets a server treat local parts case-sensitively; in
// practice every mailbox provider folds case, and two aliases differing only in case are a trap.
import { domainToASCII } from 'node:url';

export interface NormalizedAddress {
  localPart: string;
  domain: string;
  address: string;
}

export class InvalidAddressError extends Error {
  constructor(input: string, reason: string) {
    super(`invalid address "${input}": ${reason}`);
    this.name = 'InvalidAddressError';
  }
}

export function normalizeDomain(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  if (trimmed === '') throw new InvalidAddressError(input, 'empty domain');
  if (trimmed.startsWith('[')) throw new InvalidAddressError(input, 'address literals are not accepted');
  const ascii = domainToASCII(trimmed.toLowerCase());
  if (ascii === '' || ascii.length > 253) throw new InvalidAddressError(input, 'not a valid domain name');
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(ascii)) {
    throw new InvalidAddressError(input, 'not a valid domain name');
  }
  return ascii;
}

export function normalizeLocalPart(input: string): string {
  if (input.length === 0) throw new InvalidAddressError(input, 'empty local part');
  if (Buffer.byteLength(input, 'utf8') > 64) throw new InvalidAddressError(input, 'local part longer than 64 octets');
  if (/[\s@<>()[\]\\,;:"\u0000-\u001f\u007f]/.test(input)) {
    throw new InvalidAddressError(input, 'local part contains a character that needs quoting');
  }
  if (input.startsWith('.') || input.endsWith('.') || input.includes('..')) {
    throw new InvalidAddressError(input, 'misplaced dot in local part');
  }
  return input.toLowerCase();
}

export function normalizeAddress(input: string): NormalizedAddress {
  const at = input.lastIndexOf('@');
  if (at <= 0 || at === input.length - 1) throw new InvalidAddressError(input, 'expected local-part@domain');
  const localPart = normalizeLocalPart(input.slice(0, at));
  const domain = normalizeDomain(input.slice(at + 1));
  const address = `${localPart}@${domain}`;
  if (address.length > 320) throw new InvalidAddressError(input, 'longer than 320 characters');
  return { localPart, domain, address };
}

/** True when the address needs SMTPUTF8 (RFC 6531) to be carried: a non-ASCII local part. */
export function needsSmtpUtf8(localPart: string): boolean {
  return /[^\x00-\x7f]/.test(localPart);
}
