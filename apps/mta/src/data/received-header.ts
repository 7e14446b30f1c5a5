// The Received: trace header the edge prepends (RFC 5321 4.4), with the "with" keywords of
// RFC 3848 and RFC 6531 (ESMTP, ESMTPS, UTF8SMTPS ...). "for" names the recipient only when there
// is exactly one, so a list's members do not learn of each other.
import net from 'node:net';

export interface ReceivedFacts {
  helo: string | null;
  clientAddress: string;
  edgeHostname: string;
  esmtp: boolean;
  tls: boolean;
  smtpUtf8: boolean;
  /** mail.messages.id: the "id" of the trace header is the id of the "250 queued as" reply. */
  messageId: string;
  recipients: readonly string[];
  date: Date;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => String(n).padStart(2, '0');

/** RFC 5322 3.3 date-time, in UTC. */
export function rfc5322Date(date: Date): string {
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ${two(
    date.getUTCHours(),
  )}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`;
}

/** RFC 5321 address literal: [192.0.2.1] or [IPv6:2001:db8::1]; IPv4-mapped IPv6 as IPv4. */
export function addressLiteral(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return `[${mapped[1]}]`;
  return net.isIPv6(address) ? `[IPv6:${address}]` : `[${address}]`;
}

function withKeyword(facts: ReceivedFacts): string {
  const base = facts.smtpUtf8 ? 'UTF8SMTP' : facts.esmtp ? 'ESMTP' : 'SMTP';
  return facts.tls && base !== 'SMTP' ? `${base}S` : base;
}

// Anything from the client goes in as a token: no spaces, no parentheses, no control characters.
const token = (value: string) => value.replace(/[^\x21-\x7e]|[()]/g, '?').slice(0, 255);

export function receivedHeader(facts: ReceivedFacts): Buffer {
  const lines = [
    `Received: from ${token(facts.helo ?? 'unknown')} (${addressLiteral(facts.clientAddress)})`,
    `\tby ${token(facts.edgeHostname)} (Postern) with ${withKeyword(facts)} id ${token(facts.messageId)}`,
  ];
  const onlyRecipient = facts.recipients.length === 1 ? facts.recipients[0] : undefined;
  if (onlyRecipient !== undefined) lines.push(`\tfor <${onlyRecipient}>;`);
  else lines[lines.length - 1] += ';';
  lines.push(`\t${rfc5322Date(facts.date)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
}
