// What the attempt worker needs from an outbound relay: hand over one message for one recipient and
// say what happened. Three implementations: smtp-relay.ts (one relay, nodemailer, pooled),
// mx-relay.ts (each recipient domain's MX hosts) and stub-relay.ts.
export interface SmtpReply {
  code: number | null;
  enhanced: string | null;
  text: string;
}

export interface OutboundMessage {
  deliveryId: string;
  /** '' is the null reverse-path (MAIL FROM:<>). */
  envelopeFrom: string;
  recipient: string;
  raw: Buffer;
  /** Header lines sent before raw (a DKIM-Signature): written to the connection first, never
   *  copied into raw, so a signed message is not held twice. */
  headerPrefix?: Buffer;
  /** The original sender used SMTPUTF8 / BODY=8BITMIME at MAIL FROM: say the same to the relay. */
  smtpUtf8?: boolean;
  body8BitMime?: boolean;
}

/** Whether the session was encrypted; an unverified certificate is still used (opportunistic TLS). */
export type TlsUse = { kind: 'none' } | { kind: 'verified'; protocol: string } | { kind: 'unverified'; protocol: string; problem: string };

/** Which server a direct-to-MX send reached, and the hosts passed over before it. */
export interface Route {
  /** The MX host's name (the domain itself for an implicit MX). */
  host: string;
  address: string;
  port: number;
  tls: TlsUse;
  /** "host[address]: why", for each host tried before this one. */
  skipped: string[];
}

/** The route table's choice for a send (routed-relay.ts), recorded with its attempt. */
export interface RouteChoice {
  /** The route that matched ("example.com", ".example.com"), or null: MAIL_SMTP_MODE's default. */
  domain: string | null;
  /** "mx" (the recipient domain's MX hosts) or the relay's host:port. */
  relay: string;
  /** The route's TLS requirement; null for the default relay of smtp mode (as it is configured). */
  tls: 'opportunistic' | 'required' | null;
}

/** The step of the session a reply answered: what it means may depend on it (a 552 to RCPT TO is
 *  temporary, RFC 5321 4.5.3.1.10; to the end of data it is a message too large). */
export type SmtpStage = 'session' | 'mail' | 'rcpt' | 'data' | 'end_of_data';

/** Each step as attempt texts and last_error name it. */
export const STAGE_NAMES: Record<SmtpStage, string> = { session: 'the session setup', mail: 'MAIL FROM', rcpt: 'RCPT TO', data: 'DATA', end_of_data: 'the end of data' };

export interface SendFailure {
  /** dns: a lookup failed (temporary, never a bounce); unroutable: the recipient domain's DNS says
   *  it takes no mail (null MX, no such domain, no MX/A/AAAA): permanent;
   *  deferred: shaping (site-shaping.ts) held the send back before it connected: no attempt. */
  kind: 'reply' | 'timeout' | 'connection' | 'dns' | 'unroutable' | 'deferred' | 'other';
  reply: SmtpReply | null;
  /** The step the reply (or failure) came at, when known (smtp-transaction.ts, failureOf). */
  stage?: SmtpStage;
  /** The whole message had been handed to the connection: the server may have it. */
  dataSent: boolean;
  message: string;
  /** The engine itself cut the send short (shutdown). */
  interrupted: boolean;
  /** What an unroutable domain is, for reporting: null_mx, no_such_domain, no_mail_host; for a
   *  temporary failure without a reply, why no session came about: mta_sts (the recipient domain's
   *  MTA-STS policy refused every host, or its cache could not be read). */
  category?: string;
  route?: Route;
  choice?: RouteChoice;
  /** A relay's session could not be set up (connect, greeting, EHLO, STARTTLS, AUTH): nothing was
   *  asked about this recipient yet (smtp-relay.ts). */
  inSetup?: boolean;
  /** deferred: due again after this long. */
  retryInMs?: number;
}

export type SendResult = { ok: true; reply: SmtpReply; route?: Route; choice?: RouteChoice } | { ok: false; failure: SendFailure };

function describeTls(tls: TlsUse): string {
  if (tls.kind === 'none') return 'no TLS';
  if (tls.kind === 'verified') return `${tls.protocol}, certificate verified`;
  return `${tls.protocol}, certificate not verified (${tls.problem})`;
}

/** "mx1.example.net[192.0.2.25]:25, TLSv1.3, certificate verified; skipped: ..." (Postfix's relay= form), for attempt rows and logs. */
export function describeRoute(route: Route): string {
  const skipped = route.skipped.length > 0 ? `; skipped: ${route.skipped.join('; ')}` : '';
  return `${route.host}[${route.address}]:${route.port}, ${describeTls(route.tls)}${skipped}`;
}

export interface Relay {
  readonly name: string;
  /** The relay never reads the message bytes (stub mode): the engine does not compose them. */
  readonly discardsMessages?: boolean;
  /** progress is called on every complete reply from the relay and every chunk of the message
   *  taken by the connection: the send is slow, not stalled (the worker beats its heartbeat). */
  send(message: OutboundMessage, progress?: () => void): Promise<SendResult>;
  /** Cut every send under way short (shutdown deadline); they resolve as interrupted failures. */
  interrupt(): void;
  close(): Promise<void>;
}

/**
 * Whether a reply is one (RFC 5321 4.2.1): its first line starts with a three-digit code and every
 * other line of a multi-line reply with the same code. A "2" alone, or "250-ok" then "550 no", is
 * not a reply; neither what nodemailer makes of it (the first character decides) nor Postfix's
 * reading (the last line's code) can be trusted with whether a message was taken.
 */
export function isWellFormedReply(reply: string): boolean {
  const lines = reply.trim().split(/\r?\n/);
  const code = /^\d{3}(?!\d)/.exec(lines[0] ?? '')?.[0];
  if (!code) return false;
  return lines.every((line) => line.startsWith(code) && !/^\d/.test(line.charAt(3)));
}

/** "250 2.0.0 Ok: queued as X" -> code, enhanced code, text. */
export function parseReply(line: string | undefined | null): SmtpReply | null {
  if (!line) return null;
  const match = /^(\d{3})[ -]?(?:([245]\.\d{1,3}\.\d{1,3})\s*)?([\s\S]*)$/.exec(line.trim());
  if (!match) return { code: null, enhanced: null, text: line.trim().slice(0, 1_000) };
  const code = Number(match[1]);
  return {
    code: code >= 200 && code <= 599 ? code : null,
    enhanced: match[2] ?? null,
    text: (match[3] ?? '').replace(/\s+/g, ' ').trim().slice(0, 1_000),
  };
}
