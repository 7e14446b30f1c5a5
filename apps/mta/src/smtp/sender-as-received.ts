// The reverse-path is stored and relayed in the form the sender sent it (issue 8, requirement 8).
// smtp-server decodes an xn-- (A-label) domain to Unicode while parsing MAIL FROM; relayed in that
// form to a server without SMTPUTF8 the message is refused (RFC 6531 3.2: a non-ASCII address needs
// SMTPUTF8 on the whole path), although the sender never used SMTPUTF8. Installed on each
// connection's own parser method, after smtp-server has validated the address: when the argument as
// received was ASCII and differs from the parsed address only in its decoded domain, the parsed
// address is put back to what was received. Recipients need nothing: they are normalised to
// A-labels for the lookup, and deliveries go to alias targets.

type ParseAddress = (rawName: string, rawCommand: Buffer | string) => false | { address: string };

export interface AddressParsingConnection {
  _parseAddressCommand: ParseAddress;
}

const MAIL_FROM_ARGUMENT = /^MAIL\s+FROM\s*:\s*<([^<>]*)>/i;
const SOURCE_ROUTE = /^@[^\s,:@]+(?:,@[^\s,:@]+)*:/;
const ASCII = /^[\x21-\x7e]*$/;

/** The address between the angle brackets of a MAIL FROM line, source route dropped. */
export function rawSenderArgument(command: string): string | null {
  const match = MAIL_FROM_ARGUMENT.exec(command);
  return match?.[1] === undefined ? null : match[1].replace(SOURCE_ROUTE, '');
}

/** The sender as received when smtp-server only decoded its domain; otherwise the parsed one. */
export function senderAsReceived(parsedAddress: string, command: string): string {
  const raw = rawSenderArgument(command);
  if (raw === null || raw === parsedAddress || !ASCII.test(raw)) return parsedAddress;
  const rawAt = raw.lastIndexOf('@');
  const parsedAt = parsedAddress.lastIndexOf('@');
  if (rawAt <= 0 || parsedAt <= 0 || raw.slice(0, rawAt) !== parsedAddress.slice(0, parsedAt)) return parsedAddress;
  return raw;
}

export function keepSenderAsReceived(connection: AddressParsingConnection): void {
  const parse = connection._parseAddressCommand;
  if (typeof parse !== 'function') throw new Error('smtp-server: _parseAddressCommand not found; check the sender-as-received hook');
  connection._parseAddressCommand = function parseKeepingSender(this: AddressParsingConnection, rawName, rawCommand) {
    const parsed = parse.call(this, rawName, rawCommand);
    if (parsed && String(rawName).trim().toUpperCase() === 'MAIL FROM' && parsed.address) {
      parsed.address = senderAsReceived(parsed.address, String(rawCommand));
    }
    return parsed;
  };
}
