// Every reply the edge chooses itself, in one place, each with its reason. smtp-server sends the
// responseCode and the message of an error it is given; an error WITHOUT a responseCode becomes a
// 550 there, which is exactly the wrong answer when we are merely unsure (stale-alias-table, docs/incidents.md). So every hook
// passes one of these, and anything unexpected is turned into lookupFailed() by asReply().
import { SmtpReplyError } from '@postern/shared';

/** The label a reply is counted under in the metrics. */
export type ReplyReason =
  | 'accepted'
  | 'unknown_recipient'
  // An SRS address the hash or the age refuses (recipients/srs-recipient.ts): 550 5.1.1 as above.
  | 'srs_forged'
  | 'srs_expired'
  | 'lookup_failed'
  | 'relay_denied'
  | 'too_many_recipients'
  | 'too_many_rcpt_commands'
  | 'lookup_busy'
  | 'too_many_hops'
  | 'bad_address'
  | 'bad_sender'
  | 'smtputf8_required'
  | 'rate_limited'
  | 'too_many_connections'
  | 'unsupported_parameter'
  | 'shutting_down'
  | 'message_too_large'
  | 'header_too_large'
  | 'insufficient_storage'
  | 'bare_line_ending'
  | 'storage_failed'
  | 'storage_full'
  | 'data_timeout'
  | 'connection_lost'
  // MAIL_INBOUND_AUTH_POLICY=enforce (src/auth/auth-replies.ts)
  | 'dmarc_reject'
  | 'auth_unsure';

export class EdgeReply extends SmtpReplyError {
  readonly reason: ReplyReason;
  constructor(responseCode: number, enhancedCode: string, text: string, reason: ReplyReason, cause?: unknown) {
    super(responseCode, enhancedCode, text, { cause });
    this.reason = reason;
  }
}

// 550 5.1.1: only when the live lookup succeeded and found nothing (RFC 3463 X.1.1).
export const unknownRecipient = (address: string) =>
  new EdgeReply(550, '5.1.1', `<${address}>: recipient address rejected: no such mailbox here`, 'unknown_recipient');

// 550 5.1.1 as for an unknown mailbox, the same text (a prober learns nothing), counted under its
// own reason; the cause (what did not verify) goes to the log line of the refusal.
export const srsRefused = (address: string, reason: 'srs_forged' | 'srs_expired', why: string) =>
  new EdgeReply(550, '5.1.1', `<${address}>: recipient address rejected: no such mailbox here`, reason, new Error(why));

// 451 4.3.0: the lookup failed or ran out of time — never 5xx when unsure (RFC 3463 X.3.0).
export const lookupFailed = (cause?: unknown) =>
  new EdgeReply(451, '4.3.0', 'Temporary recipient lookup failure, try again later', 'lookup_failed', cause);

// 554 5.7.1: not a domain of ours; we are no open relay (RFC 5321 3.6.2, RFC 3463 X.7.1).
export const relayDenied = (address: string) =>
  new EdgeReply(554, '5.7.1', `<${address}>: relay access denied`, 'relay_denied');

// 452 4.5.3: past the limit; the client sends the rest in another transaction (RFC 5321 4.5.3.1.10).
export const tooManyRecipients = (limit: number) =>
  new EdgeReply(452, '4.5.3', `Too many recipients (at most ${limit} per message)`, 'too_many_recipients');

// 452 4.5.3: past MAIL_MTA_MAX_RCPT_COMMANDS in this transaction, repeats included: a harvest of
// 1,000 identical RCPTs is cut off here instead of being answered one by one.
export const tooManyRcptCommands = (limit: number) =>
  new EdgeReply(452, '4.5.3', `Too many RCPT commands (at most ${limit} per transaction)`, 'too_many_rcpt_commands');

// 451 4.3.2: this client's network already has MAIL_MTA_CLIENT_LOOKUP_CONCURRENCY lookups running and
// none came free within the lookup deadline; the shared pool is left to other senders (X.3.2:
// system not accepting network messages, for now).
export const lookupBusy = (perClient: number) =>
  new EdgeReply(451, '4.3.2', `Too many concurrent recipient lookups from your network (at most ${perClient}), try again later`, 'lookup_busy');

// 554 5.4.6: more Received: headers than MAIL_MTA_MAX_HOPS, a mail loop (RFC 5321 6.3, RFC 3463 X.4.6).
export const tooManyHops = (limit: number) =>
  new EdgeReply(554, '5.4.6', `Too many hops (more than ${limit} Received: headers): mail loop`, 'too_many_hops');

// 501 5.1.3: syntactically unusable address (RFC 3463 X.1.3).
export const badAddress = (address: string, detail: string) =>
  new EdgeReply(501, '5.1.3', `<${address}>: bad address syntax (${detail})`, 'bad_address');

// 501 5.1.7: a reverse-path no column can hold as it is (a NUL, a control character, broken Unicode,
// over 320 characters): refused here rather than failing the accept statement with a 451 on every
// retry (RFC 3463 X.1.7: bad sender's mailbox address syntax).
export const badSender = (detail: string) => new EdgeReply(501, '5.1.7', `Bad sender address syntax: the address ${detail}`, 'bad_sender');

// 553 5.6.7: a non-ASCII local part needs SMTPUTF8 declared on MAIL FROM (RFC 6531 3.5).
export const smtpUtf8Required = (address: string) =>
  new EdgeReply(553, '5.6.7', `<${address}>: non-ASCII address without SMTPUTF8`, 'smtputf8_required');

// 451 4.7.1: too many messages from this client address; later is fine (RFC 3463 X.7.1).
export const rateLimited = (limitPerMinute: number) =>
  new EdgeReply(451, '4.7.1', `Too many messages from your address (limit ${limitPerMinute}/min), try again later`, 'rate_limited');

// 555 5.5.4: a MAIL FROM or RCPT TO parameter of an extension the edge does not offer (RFC 5321
// 4.1.1.11; Postfix's wording): one it ignored would go unhonoured without the client knowing.
export const unsupportedParameter = (name: string) =>
  new EdgeReply(555, '5.5.4', `Unsupported option: ${name.slice(0, 64)}`, 'unsupported_parameter');

// 421 4.7.0: the client's network holds MAIL_MTA_MAX_CLIENTS_PER_NETWORK sessions already; 421 closes
// the connection (RFC 5321 3.8) and the sender retries later, as Postfix answers past its
// smtpd_client_connection_count_limit.
export const tooManyConnections = (limit: number) =>
  new EdgeReply(421, '4.7.0', `Too many connections from your network (at most ${limit}), try again later`, 'too_many_connections');

// 421 4.3.2: the edge is stopping; smtp-server closes the connection after a 421 (RFC 5321 3.8).
export const shuttingDown = () => new EdgeReply(421, '4.3.2', 'Service shutting down, try again later', 'shutting_down');

// 552 5.3.4: larger than MAIL_MTA_MAX_MESSAGE_SIZE, counted on the bytes received (RFC 3463 X.3.4).
export const messageTooLarge = (limit: number) =>
  new EdgeReply(552, '5.3.4', `Message exceeds the maximum size of ${limit} bytes`, 'message_too_large');

// 552 5.3.4: a header section larger than MAIL_MTA_MAX_HEADER_SIZE, counted on the bytes received
// up to the blank line (all of a message without one). Refused, not truncated: the edge stores
// messages as received, and cutting the header would change what DKIM signed.
export const headerTooLarge = (limit: number) =>
  new EdgeReply(552, '5.3.4', `Message header exceeds the maximum size of ${limit} bytes`, 'header_too_large');

// 452 4.3.1: the edge's DATA memory budget (MAIL_MTA_DATA_MEMORY_BUDGET) has no room for the message
// now (RFC 3463 X.3.1, RFC 5321 4.2.2: 452 insufficient system storage). Never 5xx: it is our
// momentary state, not the message; the sender keeps it and retries.
export const insufficientStorage = () => new EdgeReply(452, '4.3.1', 'Insufficient system storage', 'insufficient_storage');

// 554 5.6.0: a bare CR or LF in DATA — the SMTP smuggling vectors. Only <CR><LF>.<CR><LF> ends a
// message and only CRLF ends a line; anything else is refused rather than guessed at.
export const bareLineEnding = () =>
  new EdgeReply(
    554,
    '5.6.0',
    'Message refused: bare CR or LF in DATA; lines must end with CRLF (SMTP smuggling protection)',
    'bare_line_ending',
  );

// 451 4.3.0: the commit failed; nothing was stored, the sender keeps the message and retries.
export const storageFailed = (cause?: unknown) =>
  new EdgeReply(451, '4.3.0', 'Temporary failure storing the message, try again later', 'storage_failed', cause);

// 452 4.3.1: the commit failed because PostgreSQL's disk is full (SQLSTATE 53100, db-errors.ts):
// nothing was stored. RFC 3463 X.3.1 "mail system full" is what the sender's logs and its operator
// should read, not a generic failure; like every 4xx the sender keeps the message and retries, and
// once space is freed the next try is stored. Never 5xx: the disk is our state, not the message's.
export const storageFull = (cause?: unknown) =>
  new EdgeReply(452, '4.3.1', 'Insufficient system storage: the message store is full, try again later', 'storage_full', cause);

// 421 4.4.2: the whole DATA phase took longer than MAIL_MTA_DATA_TIMEOUT (a trickling sender).
export const dataTimeout = (limitMs: number) =>
  new EdgeReply(421, '4.4.2', `DATA not completed within ${Math.round(limitMs / 1000)} s, closing connection`, 'data_timeout');

// 451 4.4.2: the client went away (or the stream broke) before the final dot; nothing was stored.
export const connectionLost = (cause?: unknown) =>
  new EdgeReply(451, '4.4.2', 'Connection lost during DATA, nothing was stored', 'connection_lost', cause);

/** Any error as a reply a sender may see: our own as they are, everything else as 451 4.3.0. */
export function asReply(error: unknown, fallback: (cause: unknown) => EdgeReply = lookupFailed): EdgeReply {
  if (error instanceof EdgeReply) return error;
  return fallback(error);
}
