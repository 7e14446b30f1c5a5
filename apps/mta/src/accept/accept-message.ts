// The one transaction behind "250 queued": the message, its raw bytes, and one delivery per
// expanded target, all or nothing. It is a single statement (data-modifying CTEs), so it commits
// or fails as one with a single round trip; the edge answers 250 only after it returned. Messages
// finishing DATA at about the same time share it (accept-batcher.ts): one statement, one commit,
// one WAL flush for all of them. The
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

// One statement for a batch of messages (accept-batcher.ts): one row per message in parallel
// arrays, the deliveries of all of them in a second set of arrays naming their message. The raw
// bytes travel as ONE bytea parameter, binary (the batch's payloads end to end, cut by offset and
// length): a bytea[] would go as hex text, twice the bytes. The text is the same whatever the
// batch size, so it is prepared once per connection. A new column of mail.messages is one more
// array in `input` (and the INSERT) and one more column(...) at the same place in acceptValues()
// (appended: $23 and $24 are the inbound authentication results).
const ACCEPT_SQL = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::inet[], $6::text[], $7::text[], $8::bool[],
                       $9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::text[], $15::int[], $16::int[],
                       $23::text[], $24::jsonb[])
    AS u(id, envelope_from, to_first, to_last, client_address, client_hostname, helo, smtputf8,
         message_id_header, subject, from_header, size_bytes, body_type, traceparent, raw_offset, raw_length,
         auth_results, auth_verdicts)),
m AS (
  INSERT INTO mail.messages (id, envelope_from, envelope_to, client_address, client_hostname, helo, smtputf8,
                             message_id_header, subject, from_header, size_bytes, body_type, traceparent,
                             auth_results, auth_verdicts)
  SELECT i.id, i.envelope_from, ($17::text[])[i.to_first:i.to_last], i.client_address, i.client_hostname, i.helo, i.smtputf8,
         i.message_id_header, i.subject, i.from_header, i.size_bytes, i.body_type, i.traceparent,
         i.auth_results, i.auth_verdicts
    FROM input i
  RETURNING id),
p AS (
  INSERT INTO mail.message_payloads (message_id, raw)
  SELECT m.id, substring($18::bytea FROM i.raw_offset + 1 FOR i.raw_length) FROM m JOIN input i ON i.id = m.id),
d AS (
  INSERT INTO mail.deliveries (id, source, payload_mode, message_id, recipient, envelope_from, rfc_message_id,
                               traceparent, status, next_attempt_at)
  SELECT u.id, 'smtp', 'relay', m.id, u.recipient, i.envelope_from, u.rfc_message_id, i.traceparent, 'queued', now()
    FROM unnest($19::uuid[], $20::uuid[], $21::text[], $22::text[]) AS u(id, message_id, recipient, rfc_message_id)
    JOIN m ON m.id = u.message_id
    JOIN input i ON i.id = u.message_id
  RETURNING id)
SELECT (SELECT count(*) FROM d)::int AS deliveries`;

/** A message with the ids of its deliveries (one per target, with a stable Message-ID each). */
export interface PreparedAccept {
  message: MessageToAccept;
  deliveryIds: string[];
  rfcMessageIds: string[];
}

/** Allocates the delivery ids; throws for a message without targets (a bug upstream). */
export function prepareAccept(hostname: string, message: MessageToAccept): PreparedAccept {
  if (message.targets.length === 0) throw new Error('prepareAccept: a message needs at least one target');
  const deliveryIds = message.targets.map(() => randomUUID());
  return { message, deliveryIds, rfcMessageIds: deliveryIds.map((id) => `<${id}@${hostname}>`) };
}

/** The parameters of ACCEPT_SQL for a batch. */
export function acceptValues(batch: readonly PreparedAccept[]): unknown[] {
  const column = <T>(pick: (message: MessageToAccept) => T) => batch.map(({ message }) => pick(message));
  const toFirst: number[] = [];
  const toLast: number[] = [];
  const envelopeTo: string[] = [];
  const rawOffset: number[] = [];
  const rawLength: number[] = [];
  let offset = 0;
  for (const { message } of batch) {
    toFirst.push(envelopeTo.length + 1);
    envelopeTo.push(...message.envelopeTo);
    toLast.push(envelopeTo.length);
    rawOffset.push(offset);
    rawLength.push(message.raw.length);
    offset += message.raw.length;
  }
  // A message alone is sent as it is; a batch's payloads are copied once, end to end.
  const raw = batch.length === 1 ? (batch[0] as PreparedAccept).message.raw : Buffer.concat(batch.map(({ message }) => message.raw), offset);
  const deliveries = batch.flatMap(({ message, deliveryIds, rfcMessageIds }) =>
    deliveryIds.map((id, index) => ({ id, messageId: message.id, recipient: message.targets[index] as string, rfc: rfcMessageIds[index] as string })),
  );
  return [
    column((m) => m.id),
    column((m) => m.envelopeFrom),
    toFirst,
    toLast,
    column((m) => m.clientAddress),
    column((m) => m.clientHostname),
    column((m) => m.helo),
    column((m) => m.smtpUtf8),
    column((m) => m.messageIdHeader),
    column((m) => m.subject),
    column((m) => m.fromHeader),
    column((m) => m.sizeBytes),
    column((m) => m.bodyType),
    column((m) => m.traceparent),
    rawOffset,
    rawLength,
    envelopeTo,
    raw,
    deliveries.map((d) => d.id),
    deliveries.map((d) => d.messageId),
    deliveries.map((d) => d.recipient),
    deliveries.map((d) => d.rfc),
    column((m) => m.authResults),
    column((m) => (m.authVerdicts === null ? null : JSON.stringify(m.authVerdicts))),
  ];
}

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
    // `pid` on every line is this process's: the statement's server process is the `backendPid`.
    deps.logger.warn({ backendPid: pid, afterMs: deps.cancelAfterMs }, 'accept statement still running: asking PostgreSQL to cancel it');
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

/**
 * Commits a batch of messages in one statement: resolves after the COMMIT (every message stored),
 * rejects with the statement's error when it is known to have rolled back (nothing of the batch
 * stored: isStatementRolledBack), with the connection's error when its outcome was settled as not
 * stored, and with UndecidedAcceptError (naming the batch's first message) when the edge stopped
 * before the outcome was known.
 */
export async function commitAccepts(deps: AcceptDeps, batch: readonly PreparedAccept[]): Promise<void> {
  const first = batch[0];
  if (!first) return;
  const messageId = first.message.id;
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
  const statement = client.query({ name: 'postern_accept_messages', text: ACCEPT_SQL, values: acceptValues(batch) });
  statement.catch(() => {});
  const stopped = abortedAt(deps.signal);
  try {
    const outcome = await Promise.race([statement.then(() => 'done' as const), stopped.promise]);
    if (outcome === 'stopped') {
      // The edge is stopping with the statement still undecided: its connection is dropped and no
      // reply is given (docs/mta.md, Shutdown).
      release(true);
      throw new UndecidedAcceptError(messageId);
    }
    release(false);
  } catch (error) {
    if (error instanceof UndecidedAcceptError) throw error;
    if (isStatementRolledBack(error)) {
      release(false);
      throw error;
    }
    release(true);
    deps.logger.warn({ err: error, messageId, messages: batch.length, backendPid: pid }, 'accept connection failed mid-statement: settling its outcome');
    // One statement: all of the batch is stored or none of it, so its first message tells.
    const stored = await settledOutcome(deps.control, messageId, pid, { retryMs: deps.retryMs, signal: deps.signal });
    if (stored === null) throw new UndecidedAcceptError(messageId);
    if (!stored) throw error;
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
