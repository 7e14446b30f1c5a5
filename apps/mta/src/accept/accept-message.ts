// The one transaction behind "250 queued": the message, its raw bytes, and one delivery per
// expanded target, all or nothing. It is a single statement (data-modifying CTEs), so it commits
// or fails as one with a single round trip; the edge answers 250 only after it returned. The
// deliveries' insert trigger NOTIFYs mail_delivery_due on commit, so an idle engine starts at once.
//
// The reply must match what is stored, so the edge never gives up on the
// statement on a client-side timer: the accept pool has no client query timeout, and when the
// statement outlives `cancelAfterMs` the edge asks the server to cancel it (pg_cancel_backend from
// another connection) and keeps waiting for the statement's own answer. A 57014 from the server is
// a known rollback (451); a commit that won the race is a 250. A broken connection is settled by
// looking the message id up once its backend is gone (statement-outcome.ts). With PostgreSQL hung
// entirely this waits as long as the hang lasts: a late truthful reply, never a 451 that is a lie.
import { randomUUID } from 'node:crypto';
import type { Logger, Pool, Queryable } from '@postern/shared';
import type { AuthVerdicts } from '../auth/verdicts.ts';
import { cancelBackend, isStatementRolledBack, settledOutcome } from './statement-outcome.ts';

export interface MessageToAccept {
  /** mail.messages.id, chosen before the bytes are stored: the id the Received: header, the
   *  "250 queued as" reply, the API and the logs (key `messageId`) all name the message by. */
  id: string;
  /** '' for the null reverse-path; in the form the sender sent it (an A-label domain stays xn--). */
  envelopeFrom: string;
  /** The recipients as accepted at RCPT, normalised. */
  envelopeTo: readonly string[];
  /** Distinct target addresses the recipients expanded to: one delivery each. */
  targets: readonly string[];
  clientAddress: string | null;
  clientHostname: string | null;
  helo: string | null;
  smtpUtf8: boolean;
  /** BODY= given at MAIL FROM (RFC 6152), lower case, or null when the sender gave none. */
  bodyType: '7bit' | '8bitmime' | null;
  messageIdHeader: string | null;
  subject: string | null;
  fromHeader: string | null;
  /** Bytes received in DATA (without the trace header). */
  sizeBytes: number;
  /** What is stored: the trace header followed by the bytes received. */
  raw: Buffer;
  /** The W3C trace context of the accept (stored with the message and each delivery: the engine's
   *  spans continue it), or null with tracing off. */
  traceparent: string | null;
  /** Inbound SPF/DKIM/DMARC/ARC (src/auth/): the Authentication-Results value and the verdicts;
   *  null with MAIL_INBOUND_AUTH_POLICY=off. */
  authResults: string | null;
  authVerdicts: AuthVerdicts | null;
}

export interface AcceptedMessage {
  messageId: string;
  deliveryIds: string[];
}

export interface AcceptDeps {
  /** Connections for the statement; created without a client-side query timeout. */
  pool: Pool;
  /** Another pool, for the cancel and the settling look-up. */
  control: Queryable;
  hostname: string;
  /** When the statement is still running after this, the server is asked to cancel it. */
  cancelAfterMs: number;
  /** Between cancel requests and settling look-ups while the server does not answer. */
  retryMs: number;
  logger: Logger;
  /** Aborted when the edge stops: an undecided outcome is then left undecided (see docs/mta.md). */
  signal?: AbortSignal;
}

/** Thrown when the statement's outcome could not be known before the edge stopped: no reply is true. */
export class UndecidedAcceptError extends Error {
  readonly messageId: string;
  constructor(messageId: string) {
    super(`accept of message ${messageId} undecided when the edge stopped`);
    this.messageId = messageId;
  }
}

const ACCEPT_SQL = `
WITH m AS (
  INSERT INTO mail.messages (id, envelope_from, envelope_to, client_address, client_hostname, helo, smtputf8,
                             message_id_header, subject, from_header, size_bytes, body_type, traceparent,
                             auth_results, auth_verdicts)
  VALUES ($1, $2, $3::text[], $4::inet, $5, $6, $7, $8, $9, $10, $11, $16, $17, $18, $19::jsonb)
  RETURNING id),
p AS (
  INSERT INTO mail.message_payloads (message_id, raw) SELECT m.id, $12 FROM m),
d AS (
  INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id,
                               traceparent, status, next_attempt_at)
  SELECT u.id, 'smtp', 'relay', m.id, u.recipient, $2, u.rfc_message_id, $17, 'queued', now()
    FROM m, unnest($13::uuid[], $14::text[], $15::text[]) AS u(id, recipient, rfc_message_id)
  RETURNING id)
SELECT (SELECT count(*) FROM d)::int AS deliveries`;

/**
 * Asks for the cancel every retryMs until the statement has answered (a hung server answers
 * nothing). stop() resolves once no cancel request is in flight: the connection goes back to the
 * pool only then, so a late cancel cannot hit the next message's statement on it.
 */
function cancelWhileRunning(deps: AcceptDeps, pid: number | null): { stop(): Promise<void> } {
  let stopped = false;
  let inFlight: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const attempt = () => {
    if (stopped || pid === null) return;
    deps.logger.warn({ pid, afterMs: deps.cancelAfterMs }, 'accept statement still running: asking PostgreSQL to cancel it');
    inFlight = cancelBackend(deps.control, pid)
      .catch(() => false)
      .finally(() => {
        if (!stopped) timer = setTimeout(attempt, deps.retryMs);
      });
  };
  timer = setTimeout(attempt, deps.cancelAfterMs);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      return inFlight.then(() => undefined);
    },
  };
}

/** A new message id (a UUID): allocated before the trace header that names it is written. */
export function newMessageId(): string {
  return randomUUID();
}

/** Allocates the delivery ids (and one stable Message-ID per delivery) and commits. */
export async function acceptMessage(deps: AcceptDeps, message: MessageToAccept): Promise<AcceptedMessage> {
  if (message.targets.length === 0) throw new Error('acceptMessage: a message needs at least one target');
  const messageId = message.id;
  const deliveryIds = message.targets.map(() => randomUUID());
  const rfcMessageIds = deliveryIds.map((id) => `<${id}@${deps.hostname}>`);
  // Nothing is sent once the edge is stopping: the 451 that follows is the truth.
  if (deps.signal?.aborted) throw new Error('the edge is stopping: the accept was not started');
  // A checkout that fails or times out has sent nothing: a 451 then is the truth.
  const client = await deps.pool.connect();
  const pid = (client as unknown as { processID?: number | null }).processID ?? null;
  const canceller = cancelWhileRunning(deps, pid);
  // The reply does not wait for the connection to be handed back. A broken one is destroyed at
  // once (no later statement can run on it, so a late cancel cannot hit anything).
  const release = (broken: boolean) => {
    if (broken) {
      void canceller.stop();
      client.release(true);
    } else void canceller.stop().then(() => client.release(false));
  };
  const statement = client.query({
      name: 'postern_accept_message',
      text: ACCEPT_SQL,
      values: [
        messageId,
        message.envelopeFrom,
        message.envelopeTo,
        message.clientAddress,
        message.clientHostname,
        message.helo,
        message.smtpUtf8,
        message.messageIdHeader,
        message.subject,
        message.fromHeader,
        message.sizeBytes,
        message.raw,
        deliveryIds,
        message.targets,
        rfcMessageIds,
        message.bodyType,
        message.traceparent,
        message.authResults,
        message.authVerdicts === null ? null : JSON.stringify(message.authVerdicts),
      ],
    });
  statement.catch(() => {});
  const stopped = abortedAt(deps.signal);
  try {
    const first = await Promise.race([statement.then(() => 'done' as const), stopped.promise]);
    if (first === 'stopped') {
      // The edge is stopping with the statement still undecided: its connection is dropped and no
      // reply is given (docs/mta.md, Shutdown).
      release(true);
      throw new UndecidedAcceptError(messageId);
    }
    release(false);
    return { messageId, deliveryIds };
  } catch (error) {
    if (error instanceof UndecidedAcceptError) throw error;
    if (isStatementRolledBack(error)) {
      release(false);
      throw error;
    }
    release(true);
    deps.logger.warn({ err: error, messageId, pid }, 'accept connection failed mid-statement: settling its outcome');
    const stored = await settledOutcome(deps.control, messageId, pid, { retryMs: deps.retryMs, signal: deps.signal });
    if (stored === null) throw new UndecidedAcceptError(messageId);
    if (stored) return { messageId, deliveryIds };
    throw error;
  } finally {
    stopped.dispose();
  }
}

function abortedAt(signal: AbortSignal | undefined): { promise: Promise<'stopped'>; dispose(): void } {
  if (!signal) return { promise: new Promise(() => {}), dispose() {} };
  let onAbort = () => {};
  const promise = new Promise<'stopped'>((resolve) => {
    onAbort = () => resolve('stopped');
    if (signal.aborted) resolve('stopped');
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}
