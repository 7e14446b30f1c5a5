// One attempt of one claimed delivery, start to recorded outcome:
//   suppression list / stub mode -> build the message -> relay -> classify -> one guarded status
//   change with its attempt row (sent | failed | suppressed | retrying | dead_letter), plus a bounce
//   for accepted mail that failed for good.
// The outcome of a send is known the moment the relay answers; if PostgreSQL is away right then
// (seed 001), the write is retried until it lands or the lease is nearly over — a known "sent" is
// not thrown away to be retried into a duplicate.
import { setTimeout as delay } from 'node:timers/promises';
import { type Logger, normalizeAddress, type Pool, type TemplateCatalog, withTransaction } from '@postern/shared';
import type { EngineMetrics } from '../metrics.ts';
import type { AttemptRecord, LeaseGuard } from '../queue/sql/attempt-row.ts';
import type { ClaimedDelivery } from '../queue/sql/claim-deliveries.ts';
import { completeAttempt, finishUnattempted } from '../queue/sql/complete-attempt.ts';
import { deadLetterDelivery } from '../queue/sql/dead-letter.ts';
import { deferDelivery } from '../queue/sql/defer-delivery.ts';
import { insertBounce } from '../queue/sql/insert-bounce.ts';
import { loadMessagePayload } from '../queue/sql/load-payload.ts';
import type { Relay, SmtpReply } from '../relay/relay.ts';
import { buildBounce } from './bounce.ts';
import { type Classification, classifyFailure, type ReplyRule } from './classify-reply.ts';
import { type BuiltMessage, buildMessage, UnbuildableDelivery } from './compose-message.ts';
import { nextStep, type RetryLadder } from './retry-ladder.ts';

export interface AttemptDeps {
  pool: Pool;
  relay: Relay;
  catalog: TemplateCatalog;
  ladder: RetryLadder;
  rules: readonly ReplyRule[];
  workerId: string;
  mode: 'smtp' | 'stub';
  sender: string;
  reportingMta: string;
  leaseMs: number;
  metrics: EngineMetrics;
  logger: Logger;
}

const TRANSIENT_DB_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', '53300']);

function isTransientDbError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  if (code && TRANSIENT_DB_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|timeout exceeded|Query read timeout|not queryable|Client has encountered a connection error/i.test(message);
}

/** Retry a state write while the database is away, until the lease is nearly over. */
async function persist<T>(deps: AttemptDeps, leaseDeadline: number, beat: () => void, write: () => Promise<T>): Promise<T> {
  let waitMs = 200;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (!isTransientDbError(error) || Date.now() + waitMs > leaseDeadline - 1_000) throw error;
      deps.logger.warn({ err: error, retryInMs: waitMs }, 'recording an attempt outcome failed; retrying');
      beat();
      await delay(waitMs);
      waitMs = Math.min(waitMs * 2, 5_000);
    }
  }
}

function attemptOf(status: AttemptRecord['status'], reply: SmtpReply | null, text: string | null, startedAt: Date, durationMs: number): AttemptRecord {
  return {
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

/** Ends the delivery as failed or dead_letter; for mail the edge accepted, queues its bounce in the
 *  same transaction. Returns false when the lease was lost. */
async function finishForGood(
  deps: AttemptDeps,
  delivery: ClaimedDelivery,
  lease: LeaseGuard,
  built: BuiltMessage,
  outcome: { deadLetter: boolean; attempt: AttemptRecord; reason: string; reply: SmtpReply | null },
): Promise<boolean> {
  let bounceRecipient: string | null = null;
  if (delivery.payload_mode === 'relay' && built.envelopeFrom !== '') {
    try {
      bounceRecipient = normalizeAddress(built.envelopeFrom).address;
    } catch {
      deps.logger.warn({ deliveryId: delivery.id, sender: built.envelopeFrom }, 'envelope sender is not an address a bounce can go to');
    }
  }
  return withTransaction(deps.pool, async (client) => {
    const done = outcome.deadLetter
      ? (await deadLetterDelivery(client, lease, outcome.attempt, outcome.reason)) !== null
      : (await completeAttempt(client, lease, 'failed', outcome.attempt, outcome.reason)) !== null;
    if (!done || !bounceRecipient) return done;
    const bounce = buildBounce({
      catalog: deps.catalog,
      reportingMta: deps.reportingMta,
      sender: deps.sender,
      originalSender: bounceRecipient,
      recipient: delivery.recipient,
      originalRaw: built.raw,
      receivedAt: built.receivedAt ?? delivery.created_at,
      reason: outcome.reason,
      attempts: lease.attemptNumber,
      reply: outcome.reply,
      deadLettered: outcome.deadLetter,
      remoteMta: deps.relay.name.startsWith('smtp://') ? deps.relay.name.slice('smtp://'.length).replace(/:\d+$/, '') : null,
    });
    await insertBounce(client, { recipient: bounceRecipient, messageIdHeader: bounce.messageId, subject: bounce.subject, fromHeader: bounce.from, raw: bounce.raw });
    deps.metrics.bounces.inc();
    return true;
  });
}

export async function attemptDelivery(deps: AttemptDeps, delivery: ClaimedDelivery, beat: () => void): Promise<void> {
  const log = deps.logger.child({ deliveryId: delivery.id, attempt: delivery.attempt_count });
  const lease: LeaseGuard = { deliveryId: delivery.id, workerId: deps.workerId, attemptNumber: delivery.attempt_count };
  const leaseDeadline = Date.now() + deps.leaseMs;
  const save = <T>(write: () => Promise<T>) => persist(deps, leaseDeadline, beat, write);

  if (delivery.suppressed_reason) {
    await save(() => finishUnattempted(deps.pool, lease, 'suppressed', `recipient is on the suppression list (${delivery.suppressed_reason})`));
    deps.metrics.suppressed.inc({ reason: 'suppression_list' });
    return;
  }
  // Runbook (seed 002): "auth suppression is valid in stub mode and still counts as successful intake".
  if (deps.mode === 'stub' && delivery.category === 'authsession') {
    await save(() => finishUnattempted(deps.pool, lease, 'suppressed', 'stub mode: auth-session mail is not sent'));
    deps.metrics.suppressed.inc({ reason: 'stub_mode' });
    return;
  }

  let built: BuiltMessage;
  try {
    built = await buildMessage(
      { catalog: deps.catalog, sender: deps.sender, logger: deps.logger, loadPayload: (id) => loadMessagePayload(deps.pool, id) },
      delivery,
    );
  } catch (error) {
    if (!(error instanceof UnbuildableDelivery)) throw error;
    log.error({ err: error }, 'delivery cannot be built; it fails without an attempt');
    await save(() => finishUnattempted(deps.pool, lease, 'failed', error.message));
    return;
  }

  const startedAt = new Date();
  const t0 = performance.now();
  const result = await deps.relay.send({ deliveryId: delivery.id, envelopeFrom: built.envelopeFrom, recipient: delivery.recipient, raw: built.raw });
  const durationMs = performance.now() - t0;
  beat();

  if (result.ok) {
    deps.metrics.sendDuration.observe({ status: 'sent' }, durationMs);
    deps.metrics.attemptOutcomes.inc({ status: 'sent' });
    const attempt = attemptOf('sent', result.reply, describeReply(result.reply, 'accepted'), startedAt, durationMs);
    const recorded = await save(() => completeAttempt(deps.pool, lease, 'sent', attempt, null));
    if (recorded === null) log.warn('sent, but the lease had been taken over: another engine recorded this attempt as outcome unknown');
    return;
  }

  const { failure } = result;
  const classification: Classification = classifyFailure(deps.rules, failure);
  deps.metrics.sendDuration.observe({ status: classification.attemptStatus }, durationMs);
  deps.metrics.attemptOutcomes.inc({ status: classification.attemptStatus });
  const text = failure.reply?.code ? describeReply(failure.reply, failure.message) : failure.message;
  const attempt = attemptOf(classification.attemptStatus, failure.reply, text, startedAt, durationMs);
  const reason = `${classification.category}: ${text}`.slice(0, 1_000);
  log.info({ status: classification.attemptStatus, action: classification.action, category: classification.category, reply: text }, 'attempt failed');

  if (failure.interrupted) {
    // The engine cut the send short (shutdown): not the remote's fault, due again at once.
    await save(() => deferDelivery(deps.pool, lease, 0, attempt, `interrupted by engine shutdown: ${text}`));
    return;
  }
  if (classification.action === 'suppress') {
    await save(() => completeAttempt(deps.pool, lease, 'suppressed', attempt, reason));
    deps.metrics.suppressed.inc({ reason: 'provider' });
    return;
  }
  if (classification.action === 'fail') {
    await save(() => finishForGood(deps, delivery, lease, built, { deadLetter: false, attempt, reason, reply: failure.reply }));
    return;
  }
  const step = nextStep(deps.ladder, delivery.attempt_count);
  if (step.action === 'retry') {
    await save(() => deferDelivery(deps.pool, lease, step.waitMs, attempt, reason));
    return;
  }
  const deadReason = `retry ladder exhausted after ${delivery.attempt_count} attempts; last: ${reason}`.slice(0, 1_000);
  const done = await save(() => finishForGood(deps, delivery, lease, built, { deadLetter: true, attempt, reason: deadReason, reply: failure.reply }));
  if (done) deps.metrics.deadLetters.inc();
  log.warn({ reason: deadReason }, 'delivery dead-lettered');
}
