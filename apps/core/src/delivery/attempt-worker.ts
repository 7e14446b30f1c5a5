// One attempt of one claimed delivery, start to recorded outcome:
//   suppression list / stub mode -> build the message -> relay -> classify -> one guarded status
//   change with its attempt row (sent | failed | suppressed | retrying | dead_letter), plus a bounce
//   for accepted mail that failed for good — handed to the completion batcher, which writes it
//   with other workers' outcomes in one commit; the attempt waits for that commit, its worker's slot
//   is free as soon as the outcome is handed over (loops.ts).
// The outcome of a send is known the moment the relay answers; if PostgreSQL is away, slow, or the
// row is locked right then (dead-runner, docs/incidents.md; a lost outcome would be a duplicate), the write is retried — every transient
// class, isRetryableDbError in packages/shared/src/db/db-errors.ts — until it lands or the engine stops (its pool is
// closed: that error is not retryable). A known "sent" is never thrown away to be retried into a
// duplicate: the lease keeper renews the lease meanwhile, the reclaim never takes back a lease
// this engine holds live, and a result that lands after the lease was lost anyway is still
// recorded if nobody has started the delivery again (the lifecycle's late outcomes,
// packages/shared/src/lifecycle/record-outcomes.ts).
// A delivery that would be put back to wait — a deferral, a key it cannot sign with, a temporary
// failure with the ladder left — after longer than MAIL_QUEUE_LIFETIME in the queue (since its
// insert or its requeue: queued_since, its age taken by the claim on PostgreSQL's clock, never the
// engine's Date) ends instead as a dead letter with its bounce (Postfix's maximal_queue_lifetime):
// a deferral does not spend the ladder, so without it mail for a site or relay that stays down
// waited for ever (docs/core.md, "The queue lifetime").
// In the delivery's trace (docs/observability.md), the attempt is a `delivery attempt` span, child
// of its claim (tracing/claim-spans.ts), with `delivery render` and `smtp send` under it; the
// relay's reply is an event of the send, the recorded outcome an event of the attempt, and every
// line logged meanwhile carries the trace's ids.
import { setTimeout as delay } from 'node:timers/promises';
import { type Span, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import {
  ATTR,
  type AttemptRecord,
  type ClaimedDelivery,
  contextOf,
  currentTraceparent,
  inSpan,
  isRetryableDbError,
  type Logger,
  type MessagePayload,
  type OutcomeToRecord,
  type TemplateCatalog,
} from '@postern/shared';
import type { EngineMetrics, ExpiredWait } from '../metrics.ts';
import { describeRoute, type Relay, type Route, type RouteChoice, type SendResult, type SmtpReply, STAGE_NAMES } from '../relay/relay.ts';
import { type Classification, classifyFailure, type ReplyRule } from './classify-reply.ts';
import { type BuiltMessage, buildMessage, UnbuildableDelivery } from './compose-message.ts';
import { type MessageSigner, SigningUnavailable } from './dkim-signer.ts';
import { afterTemporaryFailure, type EndCause, type Ending, failForGood, lifetimeOver } from './fail-for-good.ts';
import type { Forwarder } from './forward-message.ts';
import type { HeldPayload, PayloadHolds } from './payload-holds.ts';
import { nextStep, type RetryLadder } from './retry-ladder.ts';

export interface AttemptDeps {
  /** The messages of relayed mail, read within the engine's memory budget and shared by the
   *  attempts of one message (payload-holds.ts). */
  payloads: Pick<PayloadHolds, 'hold'>;
  /** Where outcomes are recorded (the engine's completion batcher: batched with other workers'
   *  into one commit). Resolves after the commit: true if recorded, false if the lease was lost. */
  completions: { record(outcome: OutcomeToRecord): Promise<boolean> };
  relay: Relay;
  /** DKIM-signs the mail Postern originates; absent: nothing is signed. */
  signer?: MessageSigner;
  /** SRS-rewrites and ARC-seals forwarded mail; absent: it goes as received. */
  forwarder?: Forwarder;
  catalog: TemplateCatalog;
  ladder: RetryLadder;
  /** MAIL_QUEUE_LIFETIME: a delivery that would wait again after this long in the queue is dead-lettered. */
  queueLifetimeMs: number;
  rules: readonly ReplyRule[];
  workerId: string;
  mode: 'smtp' | 'mx' | 'stub';
  sender: string;
  reportingMta: string;
  metrics: EngineMetrics;
  logger: Logger;
}

/** Retry recording an outcome through every transient failure, until it lands or the engine stops. */
async function persist<T>(deps: AttemptDeps, beat: () => void, write: () => Promise<T>): Promise<T> {
  let waitMs = 200;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (!isRetryableDbError(error)) throw error;
      deps.logger.warn({ err: error, retryInMs: waitMs }, 'recording an attempt outcome failed; retrying');
      beat();
      await delay(waitMs);
      beat();
      waitMs = Math.min(waitMs * 2, 5_000);
    }
  }
}

function attemptOf(status: AttemptRecord['status'], reply: SmtpReply | null, text: string | null, startedAt: Date, durationMs: number, choice?: RouteChoice): AttemptRecord {
  return {
    ...(choice ? { route: choice } : {}),
    status,
    smtpCode: reply?.code ?? null,
    enhancedCode: reply?.enhanced ?? null,
    smtpText: text,
    startedAt,
    finishedAt: new Date(startedAt.getTime() + Math.round(durationMs)),
    durationMs,
  };
}

function describeReply(reply: SmtpReply | null, fallback: string): string {
  return reply?.code ? `${reply.code} ${reply.enhanced ?? ''} ${reply.text}`.replace(/\s+/g, ' ').trim() : fallback;
}

/** The attempt's text: the reply, and in direct delivery the host that gave it and its TLS. */
function withRoute(text: string, route: Route | undefined): string {
  return route ? `${text} (${describeRoute(route)})` : text;
}

/** The Remote-MTA of a bounce: the MX host that answered, or the relay's host (a route's, or the default's). */
function remoteMtaOf(relay: Relay, route: Route | undefined, choice: RouteChoice | undefined): string | null {
  if (route) return route.host;
  if (choice && choice.relay !== 'mx') return choice.relay.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return relay.name.startsWith('smtp://') ? relay.name.slice('smtp://'.length).replace(/:\d+$/, '') : null;
}

/** The message a bounce quotes: as built for the send, or as received when it could not be built. */
type QuotedMessage = Pick<BuiltMessage, 'raw' | 'receivedAt'>;

/** How this attempt's delivery ends for good, with its bounce (fail-for-good.ts decides). `attempts`:
 *  those made, less than the claimed number when this one was given back (no attempt was made). */
function endingOf(
  deps: AttemptDeps,
  delivery: ClaimedDelivery,
  built: QuotedMessage,
  cause: Exclude<EndCause, { kind: 'lease_lost' }>,
  attempts: number = delivery.attempt_count,
): Ending {
  return failForGood(
    deps,
    {
      id: delivery.id,
      messageId: delivery.message_id,
      payloadMode: delivery.payload_mode,
      category: delivery.category,
      // The sender as received, as the lease reclaim has it (fail-for-good.ts lostLeaseEnding), not
      // the SRS address forwarded mail went out from: a bounce to that went out to our own MX and
      // back through the edge, its To: showing the sender an address it never used.
      envelopeFrom: delivery.envelope_from,
      recipient: delivery.recipient,
      attempts,
      raw: built.raw,
      receivedAt: built.receivedAt ?? delivery.created_at,
      // The bounce continues this attempt's trace.
      traceparent: currentTraceparent() ?? delivery.traceparent,
    },
    cause,
  );
}

type PayloadOf = (messageId: string) => Promise<MessagePayload | null>;

/** A worker waiting for the payload budget beats this often: waiting for memory is not a stall. */
const BEAT_WHILE_WAITING_MS = 1_000;

/** The received message of relayed mail that ends before it was built (its key could not sign or
 *  seal it), for its bounce's quoted headers; empty if it is gone, as the lease reclaim has it. */
async function receivedMessage(delivery: ClaimedDelivery, loadPayload: PayloadOf): Promise<QuotedMessage> {
  const payload = delivery.payload_mode === 'relay' && delivery.message_id ? await loadPayload(delivery.message_id) : null;
  return { raw: payload?.raw ?? Buffer.alloc(0), receivedAt: payload?.receivedAt ?? null };
}

/** Why a delivery is put back to wait: what is recorded, and what its ending says if its lifetime is over. */
interface Wait {
  waitedFor: ExpiredWait;
  /** The attempt made, or null: none was (its number is given back). */
  attempt: AttemptRecord | null;
  waitMs: number;
  lastError: string;
  reply: SmtpReply | null;
  remoteMta: string | null;
}

/** The relay's answer, as an event of the send span (the reply text as the relay gave it). */
function noteReply(span: Span, result: SendResult): void {
  if (result.ok) {
    span.addEvent('relay reply', replyAttributes(result.reply));
    return;
  }
  const { failure } = result;
  span.addEvent('relay reply', {
    ...(failure.reply ? replyAttributes(failure.reply) : {}),
    'postern.failure.kind': failure.kind,
    'postern.failure.message': failure.message,
    'postern.data_sent': failure.dataSent,
  });
  span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
}

function replyAttributes(reply: SmtpReply): Record<string, string | number> {
  return {
    ...(reply.code !== null ? { [ATTR.smtpReplyCode]: reply.code } : {}),
    ...(reply.enhanced !== null ? { [ATTR.smtpEnhancedCode]: reply.enhanced } : {}),
    [ATTR.smtpReplyText]: reply.text,
  };
}

/** `handedOver` is called once the outcome is with the completion batcher (before its commit): the
 *  send is over, the worker's slot may take the next delivery while the commit runs (loops.ts). */
export function attemptDelivery(deps: AttemptDeps, delivery: ClaimedDelivery, beat: () => void, handedOver: () => void = () => {}): Promise<void> {
  const attributes = {
    [ATTR.deliveryId]: delivery.id,
    [ATTR.attempt]: delivery.attempt_count,
    [ATTR.workerId]: deps.workerId,
    'postern.payload_mode': delivery.payload_mode,
    ...(delivery.message_id ? { [ATTR.messageId]: delivery.message_id } : {}),
  };
  return inSpan('delivery attempt', { attributes }, (span) => withHeldPayload(deps, beat, (payloadOf) => attempt(deps, delivery, beat, handedOver, span, payloadOf)), contextOf(delivery.traceparent));
}

/** Runs the attempt with a reader of its message that holds it (read once, within the budget) until
 *  the attempt is over, whatever ended it. */
async function withHeldPayload(deps: AttemptDeps, beat: () => void, run: (payloadOf: PayloadOf) => Promise<void>): Promise<void> {
  let held: HeldPayload | null = null;
  const payloadOf: PayloadOf = async (messageId) => {
    if (held) return held.payload;
    const beating = setInterval(beat, BEAT_WHILE_WAITING_MS);
    try {
      held = await deps.payloads.hold(messageId);
    } finally {
      clearInterval(beating);
    }
    return held?.payload ?? null;
  };
  try {
    await run(payloadOf);
  } finally {
    (held as HeldPayload | null)?.release();
  }
}

async function attempt(deps: AttemptDeps, delivery: ClaimedDelivery, beat: () => void, handedOver: () => void, span: Span, payloadOf: PayloadOf): Promise<void> {
  /** Hands the outcome to the batcher and waits for its commit; false when the lease was lost. */
  const record = async (outcome: Pick<OutcomeToRecord, 'status' | 'attempt' | 'lastError'> & Partial<Pick<OutcomeToRecord, 'waitMs' | 'bounce'>>) => {
    const committed = persist(deps, beat, () =>
      deps.completions.record({ deliveryId: delivery.id, attemptNumber: delivery.attempt_count, waitMs: 0, bounce: null, ...outcome }),
    );
    // The batcher holds the outcome from here (persist's first write runs synchronously).
    handedOver();
    const recorded = await committed;
    span.setAttribute(ATTR.outcome, outcome.status);
    span.addEvent('outcome recorded', { [ATTR.outcome]: outcome.status, 'postern.recorded': recorded });
    return recorded;
  };
  // A relayed delivery's lines also name its message by the id the edge answered and logged. The
  // fields go on each line rather than on a child logger: a child per delivery cost its bindings'
  // serialisation and redaction (about 3.6 KB of garbage) even when nothing was logged.
  const about = <T extends object>(fields: T) => ({ deliveryId: delivery.id, messageId: delivery.message_id ?? undefined, attempt: delivery.attempt_count, ...fields });
  /** Records an ending (fail-for-good.ts); true if it was recorded (and so counted). */
  const end = async (ending: Ending, attempt: AttemptRecord | null): Promise<boolean> => {
    const done = await record({ status: ending.status, attempt, lastError: ending.reason, bounce: ending.bounce });
    if (ending.status !== 'dead_letter') return done;
    if (done) deps.metrics.deadLetters.inc();
    deps.logger.warn(about({ reason: ending.reason }), 'delivery dead-lettered');
    return done;
  };
  /** Puts the delivery back to wait, or — past its queue lifetime — ends it as a dead letter with its
   *  bounce instead. `message`: the one built, or null to read the received one (relayed mail). */
  const waitAgain = async (wait: Wait, message: QuotedMessage | null): Promise<void> => {
    if (!lifetimeOver(delivery, deps.queueLifetimeMs)) {
      await record({ status: 'retrying', attempt: wait.attempt, waitMs: wait.waitMs, lastError: wait.lastError });
      return;
    }
    const cause = { kind: 'expired', queuedSince: delivery.queued_since, lifetimeMs: deps.queueLifetimeMs, reason: wait.lastError, reply: wait.reply, remoteMta: wait.remoteMta } as const;
    const attempts = wait.attempt ? delivery.attempt_count : delivery.attempt_count - 1;
    const ending = endingOf(deps, delivery, message ?? (await receivedMessage(delivery, payloadOf)), cause, attempts);
    deps.logger.warn(about({ queuedSince: delivery.queued_since, lifetimeMs: deps.queueLifetimeMs, waitedFor: wait.waitedFor }), 'queue lifetime over: the delivery ends instead of waiting again');
    if (await end(ending, wait.attempt)) deps.metrics.expired.inc({ waited_for: wait.waitedFor });
  };

  if (delivery.suppressed_reason) {
    await record({ status: 'suppressed', attempt: null, lastError: `recipient is on the suppression list (${delivery.suppressed_reason})` });
    deps.metrics.suppressed.inc({ reason: 'suppression_list' });
    return;
  }
  // Runbook (no-health-endpoints, docs/incidents.md): "auth suppression is valid in stub mode and still counts as successful intake".
  if (deps.mode === 'stub' && delivery.category === 'authsession') {
    await record({ status: 'suppressed', attempt: null, lastError: 'stub mode: auth-session mail is not sent' });
    deps.metrics.suppressed.inc({ reason: 'stub_mode' });
    return;
  }

  let built: BuiltMessage;
  try {
    built = await inSpan('delivery render', {}, () =>
      buildMessage(
        {
          catalog: deps.catalog,
          sender: deps.sender,
          logger: deps.logger,
          loadPayload: payloadOf,
          // The stub reads no bytes: templates are still rendered (a broken one fails as it would
          // in production), but no MIME message is composed for it.
          compose: !deps.relay.discardsMessages,
          ...(deps.signer ? { signer: deps.signer } : {}),
          ...(deps.forwarder ? { forwarder: deps.forwarder } : {}),
        },
        delivery,
      ),
    );
  } catch (error) {
    if (error instanceof SigningUnavailable) {
      // Its From domain has a key this engine cannot use (MAIL_SECRETS_KEY missing or wrong): the
      // mail waits, without an attempt (so the ladder is not spent on it), until the operator
      // fixes the key; it is never sent unsigned instead.
      const step = nextStep(deps.ladder, 1);
      deps.logger.error(about({ err: error }), 'DKIM signing unavailable; the delivery waits');
      const lastError = `DKIM signing unavailable: ${error.message}`.slice(0, 1_000);
      const waitMs = step.action === 'retry' ? step.waitMs : 60_000;
      await waitAgain({ waitedFor: 'signing', attempt: null, waitMs, lastError, reply: null, remoteMta: null }, null);
      return;
    }
    if (!(error instanceof UnbuildableDelivery)) throw error;
    deps.logger.error(about({ err: error }), 'delivery cannot be built; it fails without an attempt');
    await record({ status: 'failed', attempt: null, lastError: error.message });
    return;
  }

  const startedAt = new Date();
  const t0 = performance.now();
  // Every reply and data chunk beats the heartbeat: a slow relay is not a stalled worker.
  const result = await inSpan('smtp send', { kind: SpanKind.CLIENT, attributes: { 'postern.relay': deps.relay.name, 'postern.bytes': built.raw.length } }, async (send) => {
    const sent = await deps.relay.send({
      deliveryId: delivery.id,
      envelopeFrom: built.envelopeFrom,
      recipient: delivery.recipient,
      raw: built.raw,
      ...(built.signature ? { headerPrefix: built.signature } : {}),
      smtpUtf8: built.smtpUtf8 === true,
      body8BitMime: built.body8BitMime === true,
    }, beat);
    noteReply(send, sent);
    return sent;
  });
  const durationMs = performance.now() - t0;
  beat();

  if (result.ok) {
    deps.metrics.sendDuration.observe({ status: 'sent' }, durationMs);
    deps.metrics.attemptOutcomes.inc({ status: 'sent' });
    const attempt = attemptOf('sent', result.reply, withRoute(describeReply(result.reply, 'accepted'), result.route), startedAt, durationMs, result.choice);
    const recorded = await record({ status: 'sent', attempt, lastError: null });
    if (recorded) deps.logger.info(about({ reply: attempt.smtpText, route: result.route, via: result.choice }), 'delivery sent');
    else deps.logger.warn(about({}), 'sent, but the delivery had been taken back and started again: this attempt stays recorded as outcome unknown');
    return;
  }

  const { failure } = result;
  if (failure.kind === 'deferred') {
    // Shaping held the send back before any connection (relay/site-shaping.ts): no attempt was
    // made, so none is recorded and the attempt number is given back; the ladder is not spent —
    // the queue lifetime bounds the wait instead.
    await waitAgain({ waitedFor: 'deferred', attempt: null, waitMs: failure.retryInMs ?? 1_000, lastError: failure.message, reply: null, remoteMta: null }, built);
    return;
  }
  const classification: Classification = classifyFailure(deps.rules, failure);
  deps.metrics.sendDuration.observe({ status: classification.attemptStatus }, durationMs);
  deps.metrics.attemptOutcomes.inc({ status: classification.attemptStatus });
  const text = withRoute(failure.reply?.code ? describeReply(failure.reply, failure.message) : failure.message, failure.route);
  const attempt = attemptOf(classification.attemptStatus, failure.reply, text, startedAt, durationMs, failure.choice);
  // A reply's meaning can depend on the step it answered (a 552 to RCPT TO is temporary): say which.
  const answered = failure.reply?.code && failure.stage ? ` (reply to ${STAGE_NAMES[failure.stage]})` : '';
  const reason = `${classification.category}: ${text}${answered}`.slice(0, 1_000);
  const fields = about({ status: classification.attemptStatus, action: classification.action, category: classification.category, reply: text, route: failure.route, via: failure.choice });
  // A reply that is not one is the relay breaking the protocol: worth an operator's look.
  if (failure.category === 'malformed_reply') deps.logger.warn(fields, 'attempt failed: the relay sent a malformed reply');
  else deps.logger.info(fields, 'attempt failed');

  if (failure.interrupted) {
    // The engine cut the send short (shutdown): not the remote's fault, due again at once.
    await record({ status: 'retrying', attempt, waitMs: 0, lastError: `interrupted by engine shutdown: ${text}` });
    return;
  }
  if (classification.action === 'suppress') {
    await record({ status: 'suppressed', attempt, lastError: reason });
    deps.metrics.suppressed.inc({ reason: 'provider' });
    return;
  }
  const step = classification.action === 'fail' ? null : afterTemporaryFailure(deps.ladder, delivery.attempt_count);
  const remoteMta = remoteMtaOf(deps.relay, failure.route, failure.choice);
  if (step?.action === 'retry') {
    await waitAgain({ waitedFor: 'temporary', attempt, waitMs: step.waitMs, lastError: reason, reply: failure.reply, remoteMta }, built);
    return;
  }
  await end(endingOf(deps, delivery, built, { kind: step === null ? 'refused' : 'ladder_spent', reason, reply: failure.reply, remoteMta }), attempt);
}
