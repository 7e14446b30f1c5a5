// What the smtp-server hooks share: configuration, dependencies and the little per-process state
// the edge has. Passed in explicitly, so two edges in one process (the stale-alias-table test) stay apart.
import type { Logger, LookupSlots } from '@postern/shared';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { LedgerOutcome } from '../accept/accept-ledger.ts';
import type { MessageToAccept } from '../accept/accept-message.ts';
import type { InboundAuthStep } from '../auth/at-data.ts';
import type { DataMemoryBudget } from '../data/memory-budget.ts';
import type { EdgeMetrics } from '../metrics.ts';
import type { AcceptedRecipient, ResolveRecipient, SrsRecipients } from '../recipients/verify-recipient.ts';
import type { ClientConnections } from './client-connections.ts';
import type { GreetingDelay } from './greeting-delay.ts';
import type { ClientRateLimiter } from './rate-limiter.ts';
import type { SessionTraces } from './session-trace.ts';

export interface EdgeLimits {
  hostname: string;
  maxMessageSize: number;
  maxHeaderSize: number;
  maxRecipients: number;
  lookupTimeoutMs: number;
  dataTimeoutMs: number;
  rateLimitPerMinute: number;
  maxClientsPerNetwork: number;
  maxRcptCommands: number;
  clientLookupConcurrency: number;
  maxHops: number;
}

export interface EdgeContext {
  limits: EdgeLimits;
  logger: Logger;
  metrics: EdgeMetrics;
  resolve: ResolveRecipient;
  /** SRS bounce addresses (MAIL_SRS_SECRET), or null: they are looked up like any other. */
  srs: SrsRecipients | null;
  /** Stores the message unless the same transaction (by fingerprint) is in flight or was just
   *  committed; then answers with that accept (accept-ledger.ts). */
  accept(fingerprint: string, message: MessageToAccept): Promise<LedgerOutcome>;
  rateLimiter: ClientRateLimiter;
  /** The wait before the greeting and the clients that already waited it out. */
  greeting: GreetingDelay;
  /** Bytes of DATA held for messages in flight in this edge (MAIL_MTA_DATA_MEMORY_BUDGET). */
  dataMemory: DataMemoryBudget;
  /** Set when the edge stops: no new transactions, the ones under way may finish. */
  isStopping(): boolean;
  /** What each accepted RCPT resolved to; keyed by smtp-server's own envelope entry, so it goes
   *  away with the envelope (RSET, a new transaction, the connection closing). */
  recipients: WeakMap<SMTPServerAddress, AcceptedRecipient>;
  /** RCPT commands seen per transaction, keyed by smtp-server's envelope (new on every MAIL). */
  rcptCommands: WeakMap<object, number>;
  /** Recipient lookups running or waiting per client network. */
  lookupSlots: LookupSlots;
  /** Sessions greeted by onConnect and not closed yet, per client network (at most
   *  MAIL_MTA_MAX_CLIENTS_PER_NETWORK each): the ones mail_mta_connections_active counts. */
  connected: ClientConnections;
  /** Sessions now inside DATA. */
  inData: Set<string>;
  /** The trace of each session's current message (session-trace.ts). */
  traces: SessionTraces;
  /** Sessions whose accept statement has been sent and is not decided yet: never told 421/451. */
  accepting: Set<string>;
  /** Closes the connection without a reply: for an accept still undecided when the edge stops. */
  closeWithoutReply(session: SMTPServerSession): void;
  /** Sends a last reply outside the hook flow and closes the connection, so that nothing the
   *  client pipelined after it is read as a command (a DATA deadline, a smuggling attempt). */
  replyAndClose(session: SMTPServerSession, code: number, text: string): void;
  /** SPF/DKIM/DMARC/ARC after DATA (MAIL_INBOUND_AUTH_POLICY; src/auth/); null: not checked. */
  inboundAuth: InboundAuthStep | null;
}
