// The MAIL FROM and RCPT TO parameters the edge honours: those of the extensions it offers in its
// EHLO (SIZE, 8BITMIME's BODY, SMTPUTF8; no DSN, so none on RCPT). Any other is refused with
// 555 5.5.4 (RFC 5321 4.1.1.11): a parameter accepted and ignored (a DSN's NOTIFY=, REQUIRETLS,
// a mistyped one) would go unhonoured without the client knowing.
import type { SMTPServerAddress } from 'smtp-server';

export const MAIL_PARAMETERS: ReadonlySet<string> = new Set(['SIZE', 'BODY', 'SMTPUTF8']);
export const RCPT_PARAMETERS: ReadonlySet<string> = new Set();

/** The first parameter (as smtp-server parsed it: upper case) not among `known`, or null. */
export function unknownParameter(address: SMTPServerAddress, known: ReadonlySet<string>): string | null {
  return Object.keys(address.args || {}).find((name) => !known.has(name)) ?? null;
}
