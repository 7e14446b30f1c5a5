// The bounce for mail the edge accepted and Postern then could not deliver: an RFC 3464 delivery
// status notification (multipart/report; report-type=delivery-status, RFC 6522) to the envelope
// sender. The human-readable part comes from templates/delivery-status-notification; the
// machine-readable message/delivery-status part and the original headers (text/rfc822-headers)
// are generated here. Never sent to the null reverse-path: a bounce is not bounced (RFC 5321 6.1).
// bounceFor() decides whether a failed delivery gets one and builds it: the one path behind both
// ways accepted mail can fail for good — an attempt's outcome (attempt-worker.ts) and a lease
// taken back with the ladder spent (fail-for-good.ts lostLeaseEnding).
import { randomUUID } from 'node:crypto';
import {
  type BounceToStore,
  type Logger,
  normalizeAddress,
  type PayloadMode,
  renderLocale,
  resolveLocale,
  storableText,
  storableTextFromBytes,
  type TemplateCatalog,
} from '@postern/shared';
import { encodeWords, foldLines } from 'nodemailer/lib/mime-funcs';
import { encode as encodeQuotedPrintable, wrap as wrapQuotedPrintable } from 'nodemailer/lib/qp';

export const DSN_TEMPLATE_ID = 'delivery-status-notification';
/** The original Subject as quoted in the bounce's Subject and text. */
export const MAX_QUOTED_SUBJECT_CHARS = 200;

export interface BounceInput {
  catalog: TemplateCatalog;
  /** Our name in Reporting-MTA (RFC 3464 2.2.2). */
  reportingMta: string;
  /** MAIL_SMTP_FROM: its domain names the MAILER-DAEMON. */
  sender: string;
  originalSender: string;
  recipient: string;
  originalRaw: Buffer;
  receivedAt: Date;
  /** 'failed' (permanent reply) or 'failed' after the ladder (dead letter): both are Action: failed. */
  reason: string;
  attempts: number;
  reply: { code: number | null; enhanced: string | null; text: string } | null;
  deadLettered: boolean;
  /** Dead-lettered because it outlived MAIL_QUEUE_LIFETIME (fail-for-good.ts), not for its last reply. */
  expired?: boolean;
  remoteMta: string | null;
}

export interface BuiltBounce {
  raw: Buffer;
  messageId: string;
  subject: string;
  from: string;
}

/** The original headers quoted in a bounce are cut at this many characters (RFC 3462 allows
 *  quoting only some of them); a hostile 1 MiB header block must not become a 1 MiB bounce. */
export const MAX_QUOTED_HEADER_CHARS = 32 * 1024;
/** RFC 5322 2.1.1: a line is at most 998 characters; a longer one is cut with a marker. */
const MAX_LINE_CHARS = 998;

/** The header block of a message (up to the first empty line, read from at most its first 64 KiB),
 *  as storable text (storableText: invalid UTF-8 and lone surrogates become U+FFFD, NUL U+2400,
 *  other controls U+FFFD), bounded, with every line at most 998 characters and CRLF line ends. */
export function headerBlock(raw: Buffer): string {
  const head = raw.subarray(0, Math.min(raw.length, 64 * 1024));
  const text = storableTextFromBytes(head, { multiline: true, maxChars: 64 * 1024 });
  const end = text.search(/\r?\n\r?\n/);
  const block = storableText(end === -1 ? text : text.slice(0, end), { multiline: true, maxChars: MAX_QUOTED_HEADER_CHARS });
  return block
    .split(/\r\n|\r|\n/)
    .map((line) => (line.length > MAX_LINE_CHARS ? storableText(line, { maxChars: MAX_LINE_CHARS }) : line))
    .join('\r\n');
}

function headerValue(headers: string, name: string): string | null {
  const unfolded = headers.replace(/\r\n[ \t]+/g, ' ');
  const match = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(unfolded);
  return match?.[1]?.trim() ?? null;
}

// A bounce is stored and sent like relayed mail without BODY=8BITMIME, to relays that may not
// offer 8BITMIME (RFC 6152 3): every byte of it is 7-bit. What it quotes — the original's header
// block, its Subject in the text, the relay's reply — may be UTF-8 or raw 8-bit.

/** A text part's body as it goes out, with its Content-Transfer-Encoding: 7bit when it is ASCII,
 *  quoted-printable (lines of at most 76) otherwise. */
function transferEncoded(text: string): { encoding: '7bit' | 'quoted-printable'; body: string } {
  if (!/[^\x00-\x7f]/.test(text)) return { encoding: '7bit', body: text };
  return { encoding: 'quoted-printable', body: wrapQuotedPrintable(encodeQuotedPrintable(Buffer.from(text, 'utf8')), 76) };
}

/** A field of the message/delivery-status part, which is 7-bit text (RFC 3464 2.1.1). */
function asciiField(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** Final-Recipient: an address beyond ASCII (SMTPUTF8) as RFC 6533 3's utf-8-addr-xtext. */
function finalRecipient(address: string): string {
  if (!/[^\x20-\x7e]/.test(address)) return `rfc822; ${address}`;
  const xtext = [...address].map((char) => (/[\x21-\x7e]/.test(char) && char !== '\\' ? char : `\\x{${char.codePointAt(0)!.toString(16).toUpperCase()}}`)).join('');
  return `utf-8; ${xtext}`;
}

/** RFC 3464 2.3.4: Status is a class.subject.detail code; a spent ladder is 4.4.7 "delivery time
 *  expired" unless the last reply said something more precise. A delivery that outlived its queue
 *  lifetime is 4.4.7 whatever its last reply (RFC 3463: the time allowed for delivery ran out; the
 *  last reply is still its Diagnostic-Code). Any other failure is permanent whatever the relay's
 *  basic code (or its absence): 5.0.0, "other undefined status". */
function statusCode(input: BounceInput): string {
  if (input.expired) return '4.4.7';
  if (input.reply?.enhanced) return input.reply.enhanced;
  if (input.deadLettered) return '4.4.7';
  return '5.0.0';
}

export function buildBounce(input: BounceInput): BuiltBounce {
  const template = input.catalog.templates.get(DSN_TEMPLATE_ID);
  if (!template) throw new Error(`template catalog has no ${DSN_TEMPLATE_ID} template`);
  const domain = input.sender.split('@').pop() ?? 'localhost';
  const from = `MAILER-DAEMON@${domain}`;
  const messageId = `<${randomUUID()}@${domain}>`;
  // Every field taken from outside — the original's headers, the relay's reply, the reason built
  // from it — is made one-line, storable and bounded before it goes into the bounce: the bounce's
  // Subject lands in a text column (the lifecycle's insertBounce) and its lines go to a relay that
  // may refuse NUL or a 64 KiB line.
  const originalHeaders = headerBlock(input.originalRaw);
  const subjectValue = headerValue(originalHeaders, 'Subject');
  const originalSubject = subjectValue ? storableText(subjectValue, { maxChars: MAX_QUOTED_SUBJECT_CHARS }) : null;
  const smtpReply = input.reply?.code
    ? storableText(`${input.reply.code} ${input.reply.enhanced ?? ''} ${input.reply.text}`.replace(/\s+/g, ' ').trim(), { maxChars: 900 })
    : null;
  const recipient = storableText(input.recipient, { maxChars: 320 });
  const reason = storableText(input.reason, { maxChars: 900 });
  const content = renderLocale(resolveLocale(template, null), {
    reportingMta: input.reportingMta,
    recipient,
    action: input.expired
      ? 'given up on: it waited in the queue longer than the time allowed for delivery'
      : input.deadLettered
        ? 'given up on after the retry schedule was exhausted'
        : 'rejected permanently',
    reason,
    attempts: input.attempts,
    receivedAt: input.receivedAt.toUTCString(),
    originalSubject: originalSubject ?? undefined,
    smtpReply: smtpReply ?? undefined,
  });
  const subject = storableText(content.subject, { maxChars: 900 });
  const boundary = `postern-dsn-${randomUUID()}`;
  const now = new Date().toUTCString();
  const perRecipient = [
    `Final-Recipient: ${finalRecipient(recipient)}`,
    'Action: failed',
    `Status: ${asciiField(statusCode(input))}`,
    ...(input.remoteMta ? [`Remote-MTA: dns; ${asciiField(input.remoteMta)}`] : []),
    ...(smtpReply ? [`Diagnostic-Code: smtp; ${asciiField(smtpReply)}`] : [`Diagnostic-Code: x-postern; ${asciiField(reason)}`]),
    `Last-Attempt-Date: ${now}`,
  ];
  const notification = transferEncoded(content.text.replace(/\r?\n/g, '\r\n'));
  const quotedHeaders = transferEncoded(originalHeaders);
  const lines = [
    `From: Mail Delivery System <${from}>`,
    `To: <${input.originalSender}>`,
    // RFC 2047 encoded words, folded (RFC 5322 2.2.3): the quoted Subject may hold anything, and a
    // relay without SMTPUTF8 must still take the bounce.
    foldLines(`Subject: ${encodeWords(subject, 'Q', 52)}`, 76, false).trimEnd(),
    `Date: ${now}`,
    `Message-ID: ${messageId}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated delivery status notification (RFC 3464).',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Transfer-Encoding: ${notification.encoding}`,
    'Content-Description: Notification',
    '',
    notification.body,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    'Content-Description: Delivery report',
    '',
    `Reporting-MTA: dns; ${asciiField(input.reportingMta)}`,
    `Arrival-Date: ${input.receivedAt.toUTCString()}`,
    '',
    ...perRecipient,
    '',
    `--${boundary}`,
    // RFC 6532 header fields are UTF-8: the part says so, and goes quoted-printable.
    'Content-Type: text/rfc822-headers; charset=utf-8',
    `Content-Transfer-Encoding: ${quotedHeaders.encoding}`,
    'Content-Description: Undelivered message headers',
    '',
    quotedHeaders.body,
    '',
    `--${boundary}--`,
    '',
  ];
  return { raw: Buffer.from(lines.join('\r\n'), 'utf8'), messageId, subject, from };
}

/** What an engine writes every bounce with: given to the attempt workers and the scheduler alike. */
export interface BounceContext {
  catalog: TemplateCatalog;
  /** Our name in Reporting-MTA. */
  reportingMta: string;
  /** MAIL_SMTP_FROM. */
  sender: string;
  logger: Logger;
}

/** The delivery that failed for good, as far as its bounce needs it. */
export interface FailedDelivery {
  id: string;
  /** The message it relays (mail.messages.id), named in the logs as `messageId`; null for others. */
  messageId: string | null;
  payloadMode: PayloadMode;
  category: string | null;
  envelopeFrom: string;
  recipient: string;
  attempts: number;
  /** The message as relayed (its headers are quoted); empty if its payload is gone. */
  raw: Buffer;
  receivedAt: Date;
  /** The trace the failure happened in: the bounce continues it. */
  traceparent: string | null;
}

export interface Failure {
  deadLettered: boolean;
  expired?: boolean;
  reason: string;
  reply: BounceInput['reply'];
  /** The relay the last attempt went to, when it is known to have answered. */
  remoteMta: string | null;
}

/** The DSN for mail the edge accepted that now fails for good (RFC 3464), or null: mail from
 *  internal producers, and mail from the null sender or a bounce (a bounce is not bounced). */
export function bounceFor(context: BounceContext, delivery: FailedDelivery, failure: Failure): BounceToStore | null {
  if (delivery.payloadMode !== 'relay' || delivery.envelopeFrom === '' || delivery.category === 'bounce') return null;
  let bounceRecipient: string;
  try {
    bounceRecipient = normalizeAddress(delivery.envelopeFrom).address;
  } catch {
    context.logger.warn(
      { deliveryId: delivery.id, messageId: delivery.messageId, sender: delivery.envelopeFrom },
      'envelope sender is not an address a bounce can go to',
    );
    return null;
  }
  let bounce: BuiltBounce;
  try {
    bounce = buildBounce({
      catalog: context.catalog,
      reportingMta: context.reportingMta,
      sender: context.sender,
      originalSender: bounceRecipient,
      recipient: delivery.recipient,
      originalRaw: delivery.raw,
      receivedAt: delivery.receivedAt,
      reason: failure.reason,
      attempts: delivery.attempts,
      reply: failure.reply,
      deadLettered: failure.deadLettered,
      expired: failure.expired === true,
      remoteMta: failure.remoteMta,
    });
  } catch (error) {
    // Building is pure and would fail the same way every time: recording the failure must not
    // hang on it (the scheduler's reclaim would stop claiming), so it is logged loudly instead.
    context.logger.error(
      { err: error, deliveryId: delivery.id, messageId: delivery.messageId },
      'the bounce for a failed delivery could not be built; none is sent',
    );
    return null;
  }
  return {
    recipient: bounceRecipient,
    messageIdHeader: bounce.messageId,
    subject: bounce.subject,
    fromHeader: bounce.from,
    raw: bounce.raw,
    traceparent: delivery.traceparent,
  };
}
