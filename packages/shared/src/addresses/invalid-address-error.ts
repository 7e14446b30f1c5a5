// Why an address or domain was refused. `reason` names the label, the character or the limit on its
// own, so each boundary can word its reply (an SMTP 501, a GraphQL validation error) without parsing
// the message; the message quotes the input with JSON escapes, so a CR or NUL in it stays visible.

/** Which part of the input the reason is about. */
export type AddressPart = 'address' | 'local part' | 'domain';

export class InvalidAddressError extends Error {
  readonly reason: string;
  readonly part: AddressPart;
  constructor(input: string, reason: string, part: AddressPart = 'address') {
    const shown = input.length > 300 ? `${input.slice(0, 300)}…` : input;
    super(`invalid ${part} ${JSON.stringify(shown)}: ${reason}`);
    this.name = 'InvalidAddressError';
    this.reason = reason;
    this.part = part;
  }
}
