// Drives the SMTP hooks (on-connect, on-mail-from, on-rcpt-to, on-data) the way smtp-server does,
// without a socket: a fake session object is given commands, the hooks answer through their
// callbacks, and each answer is read back as the reply line a client would see. The recipient
// lookup and the accept are fakes the test sets, so every reply class can be reached at will
// (lookup error, timeout, unknown alias, caps, storage failure ...). Only for the unit tests: the
// build leaves *.testkit.ts out.
import { Readable } from 'node:stream';
import { createLogger, LookupSlots, prometheus, type RecipientResolution } from '@postern/shared';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { LedgerOutcome } from '../accept/accept-ledger.ts';
import type { MessageToAccept } from '../accept/accept-message.ts';
import { DataMemoryBudget } from '../data/memory-budget.ts';
import { createEdgeMetrics } from '../metrics.ts';
import type { ResolveRecipient } from '../recipients/verify-recipient.ts';
import { ClientConnections } from './client-connections.ts';
import type { EdgeContext, EdgeLimits } from './edge-context.ts';
import { GreetingDelay } from './greeting-delay.ts';
import { onClose, onConnect } from './on-connect.ts';
import { onData } from './on-data.ts';
import { onMailFrom } from './on-mail-from.ts';
import { onRcptTo } from './on-rcpt-to.ts';
import { ClientRateLimiter } from './rate-limiter.ts';
import { SessionTraces } from './session-trace.ts';

export const TEST_LIMITS: EdgeLimits = {
  hostname: 'mx.postern.test',
  maxMessageSize: 64 * 1024,
  maxHeaderSize: 16 * 1024,
  maxRecipients: 3,
  lookupTimeoutMs: 200,
  dataTimeoutMs: 5_000,
  rateLimitPerMinute: 600,
  maxClientsPerNetwork: 50,
  maxRcptCommands: 6,
  clientLookupConcurrency: 2,
  maxHops: 3,
};

/** The one alias of the fake tables: desk@postern.test, forwarding to desk@inbox.test. */
export const acceptedDesk: RecipientResolution = {
  status: 'accepted',
  domainId: '1',
  aliasId: '1',
  kind: 'forward',
  viaCatchAll: false,
  targets: ['desk@inbox.test'],
};

/** Answers like the live tables with one domain (postern.test) holding one alias (desk). */
export const resolveDesk: ResolveRecipient = async (address) => {
  if (address.domain !== 'postern.test') return { status: 'not_local' };
  return address.localPart === 'desk' ? acceptedDesk : { status: 'no_such_alias', domainId: '1' };
};

/** Stores nothing: answers as a committed accept of `message`, one delivery per target. */
export const acceptAll = async (_fingerprint: string, message: MessageToAccept): Promise<LedgerOutcome> => ({
  messageId: message.id,
  deliveryIds: message.targets.map((_target, i) => `delivery-${i}`),
  duplicate: false,
});

export interface FakeEdgeOptions {
  limits?: Partial<EdgeLimits>;
  resolve?: ResolveRecipient;
  srs?: EdgeContext['srs'];
  accept?: EdgeContext['accept'];
  dataMemoryBudget?: number;
  /** Inbound authentication (src/auth/); default none, as with MAIL_INBOUND_AUTH_POLICY=off. */
  inboundAuth?: EdgeContext['inboundAuth'];
}

export interface FakeEdge {
  context: EdgeContext;
  /** What the accept was asked to store, in order. */
  accepted: MessageToAccept[];
  /** Replies sent outside the hook flow (replyAndClose), and sessions closed without one. */
  sentAndClosed: string[];
  closedWithoutReply: string[];
  stop(): void;
  /** One metric's current values, as "label=value,... value" lines (just "value" without labels). */
  metric(name: string): Promise<string[]>;
}

export function fakeEdge(options: FakeEdgeOptions = {}): FakeEdge {
  const limits = { ...TEST_LIMITS, ...options.limits };
  const registry = new prometheus.Registry();
  const accepted: MessageToAccept[] = [];
  const sentAndClosed: string[] = [];
  const closedWithoutReply: string[] = [];
  const accept = options.accept ?? acceptAll;
  let stopping = false;
  const context: EdgeContext = {
    limits,
    logger: createLogger('mta-unit', 'silent'),
    metrics: createEdgeMetrics(registry),
    resolve: options.resolve ?? resolveDesk,
    srs: options.srs ?? null,
    accept: (fingerprint, message) => {
      accepted.push(message);
      return accept(fingerprint, message);
    },
    rateLimiter: new ClientRateLimiter({ perMinute: limits.rateLimitPerMinute }),
    dataMemory: new DataMemoryBudget(options.dataMemoryBudget ?? 16 * limits.maxMessageSize),
    isStopping: () => stopping,
    recipients: new WeakMap(),
    rcptCommands: new WeakMap(),
    lookupSlots: new LookupSlots(limits.clientLookupConcurrency),
    greeting: new GreetingDelay({ delayMs: 0 }),
    connected: new ClientConnections(limits.maxClientsPerNetwork),
    inData: new Set(),
    accepting: new Set(),
    traces: new SessionTraces(),
    closeWithoutReply: (session) => closedWithoutReply.push(session.id),
    replyAndClose: (_session, code, text) => sentAndClosed.push(`${code} ${text}`),
    inboundAuth: options.inboundAuth ?? null,
  };
  const metric = async (name: string) => {
    const found = await registry.getSingleMetric(name)?.get();
    return (found?.values ?? []).map((value) => {
      const labels = Object.entries(value.labels).map(([key, label]) => `${key}=${label}`).join(',');
      return labels ? `${labels} ${value.value}` : String(value.value);
    });
  };
  return { context, accepted, sentAndClosed, closedWithoutReply, stop: () => (stopping = true), metric };
}

/** A hook's answer as the reply line smtp-server writes for it (its own text for a plain 250). */
function replyLine(error: Error | null | undefined, message?: string, accepted = '250'): string {
  if (!error) return message ? `250 ${message}` : accepted;
  const code = (error as { responseCode?: number }).responseCode;
  // smtp-server answers an error without a code 550: the reply the hooks must never cause by accident.
  return `${code ?? 550} ${error.message}`;
}

let sessions = 0;

/** One client connection, driven command by command through the hooks of one fake edge. */
export class FakeSession {
  readonly session: SMTPServerSession;
  private readonly hooks: {
    connect: ReturnType<typeof onConnect>;
    close: ReturnType<typeof onClose>;
    mailFrom: ReturnType<typeof onMailFrom>;
    rcptTo: ReturnType<typeof onRcptTo>;
    data: ReturnType<typeof onData>;
  };

  constructor(edge: FakeEdge, client: { remoteAddress?: string; helo?: string } = {}) {
    sessions += 1;
    this.session = {
      id: `session${sessions}`,
      localAddress: '127.0.0.1',
      localPort: 25,
      remoteAddress: client.remoteAddress ?? '192.0.2.10',
      remotePort: 40_000 + sessions,
      clientHostname: `[${client.remoteAddress ?? '192.0.2.10'}]`,
      openingCommand: 'EHLO',
      hostNameAppearsAs: client.helo ?? 'client.outside.test',
      envelope: { mailFrom: false, rcptTo: [] },
      secure: false,
      transmissionType: 'ESMTP',
      tlsOptions: false,
      xClient: new Map(),
      xForward: new Map(),
      transaction: 1,
    };
    const { context } = edge;
    this.hooks = {
      connect: onConnect(context),
      close: onClose(context),
      mailFrom: onMailFrom(context),
      rcptTo: onRcptTo(context),
      data: onData(context),
    };
  }

  connect(): Promise<string> {
    return new Promise((resolve) => this.hooks.connect(this.session, (error) => resolve(replyLine(error, undefined, '220'))));
  }

  /** MAIL FROM: a new envelope, its parameters applied before the hook (as smtp-server does). */
  mailFrom(address: string, args: Record<string, string | true> = {}): Promise<string> {
    const parsed: SMTPServerAddress = { address, args };
    const body = typeof args.BODY === 'string' ? args.BODY.toLowerCase() : '7bit';
    this.session.envelope = { mailFrom: false, rcptTo: [], bodyType: body, smtpUtf8: args.SMTPUTF8 === true };
    this.session.transaction += 1;
    return new Promise((resolve) =>
      this.hooks.mailFrom(parsed, this.session, (error) => {
        if (!error) this.session.envelope.mailFrom = parsed;
        resolve(replyLine(error));
      }),
    );
  }

  /** RCPT TO: an accepted address joins the envelope, a repeat replaces its earlier entry. */
  rcptTo(address: string): Promise<string> {
    const parsed: SMTPServerAddress = { address, args: {} };
    return new Promise((resolve) =>
      this.hooks.rcptTo(parsed, this.session, (error) => {
        if (!error) {
          const { rcptTo } = this.session.envelope;
          const index = rcptTo.findIndex((entry) => entry.address.toLowerCase() === address.toLowerCase());
          if (index >= 0) rcptTo[index] = parsed;
          else rcptTo.push(parsed);
        }
        resolve(replyLine(error));
      }),
    );
  }

  /** DATA: `content` is what smtp-server hands the hook (dot-unstuffed, without the final dot);
   *  a stream lets a test end, break or stall it. */
  data(content: string | Buffer | Readable): Promise<string> {
    const stream = (content instanceof Readable ? content : Readable.from([Buffer.from(content)])) as unknown as SMTPServerDataStream;
    return new Promise((resolve) => {
      this.hooks.data(stream, this.session, (error, message) => resolve(replyLine(error, message)));
    });
  }

  close(): void {
    this.hooks.close(this.session);
  }
}

/** A message with `hops` Received: fields of its own. */
export function message(subject: string, hops = 0): string {
  const received = Array.from({ length: hops }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n`).join('');
  return `${received}From: <sender@outside.test>\r\nTo: <desk@postern.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W+/g, '-')}@outside.test>\r\n\r\nHello.\r\n`;
}
