// The one decision by which a delivery ends without being sent: whether it is `failed` or
// `dead_letter`, the reason recorded, and the bounce for accepted mail (bounce.ts). Four causes
// reach it — an attempt the relay refused for good, an attempt that spent the retry ladder, a
// delivery that would wait again after its queue lifetime (MAIL_QUEUE_LIFETIME) ran out (these
// three in attempt-worker.ts, written by the completion batcher), and a lease that ran out with the
// ladder spent (lostLeaseEnding, which the engine gives the lease reclaim, queue/reclaim-leases.ts) — so
// the worker and the reclaim cannot build their dead letters and bounces differently (a fix to one,
// such as the NUL Subject that failed the bounce insert, cannot miss the other). What is decided
// here is stored by the delivery lifecycle (packages/shared/src/lifecycle/fail-for-good.ts).
import { type BounceToStore, MAX_REASON_CHARS, type MessagePayload, type ReclaimedDelivery, storableText } from '@postern/shared';
import { type BounceContext, bounceFor, type FailedDelivery } from './bounce.ts';
import { nextStep, type RetryLadder } from './retry-ladder.ts';

export type FinalStatus = 'failed' | 'dead_letter';

/** What ended the delivery. */
export type EndCause =
  /** The relay answered a permanent refusal (or a reply rule says it will never take it). */
  | { kind: 'refused'; reason: string; reply: Reply | null; remoteMta: string | null }
  /** The last rung of the retry ladder failed temporarily. */
  | { kind: 'ladder_spent'; reason: string; reply: Reply | null; remoteMta: string | null }
  /** The last attempt was lost with its lease (its engine died or stalled): nobody saw its reply. */
  | { kind: 'lease_lost' }
  /** It would be put back to wait (`reason`: why) after longer than MAIL_QUEUE_LIFETIME in the queue. */
  | { kind: 'expired'; queuedSince: Date; lifetimeMs: number; reason: string; reply: Reply | null; remoteMta: string | null };

type Reply = { code: number | null; enhanced: string | null; text: string };

export interface Ending {
  status: FinalStatus;
  /** last_error and, for a dead letter, its reason: storable and at most MAX_REASON_CHARS. */
  reason: string;
  /** The DSN to queue with the ending, or null (not accepted mail, null sender, a bounce). */
  bounce: BounceToStore | null;
}

export const LEASE_LOST_REASON =
  'retry ladder exhausted; the last attempt was lost with its lease (the engine died or stalled), so its outcome is unknown';

/** After a temporary failure of attempt `attemptNumber`: wait and retry, or the ladder is spent. */
export function afterTemporaryFailure(ladder: RetryLadder, attemptNumber: number): { action: 'retry'; waitMs: number } | { action: 'end'; status: FinalStatus } {
  const step = nextStep(ladder, attemptNumber);
  return step.action === 'retry' ? step : { action: 'end', status: 'dead_letter' };
}

/** A lease taken back with `attemptCount` attempts made: the ladder is spent at ladder.maxAttempts
 *  (the reclaim statement is given the same number and decides in SQL). */
export function afterLostLease(ladder: Pick<RetryLadder, 'maxAttempts'>, attemptCount: number): 'retry' | FinalStatus {
  return attemptCount >= ladder.maxAttempts ? 'dead_letter' : 'retry';
}

export function statusOf(cause: EndCause): FinalStatus {
  return cause.kind === 'refused' ? 'failed' : 'dead_letter';
}

/** A lifetime as it is configured: whole hours (the default, 120h), else minutes, else seconds. */
function lifetimeText(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** Whether a claimed delivery has outlived `lifetimeMs` at `nowMs` (performance.now()): its time in
 *  the queue at the claim, on PostgreSQL's clock, plus the time since on the engine's monotonic one.
 *  Not queued_since against the engine's Date: an engine clock hours ahead ended fresh mail. */
export function lifetimeOver(delivery: { queued_ms: number; claimed_at_ms: number }, lifetimeMs: number, nowMs: number = performance.now()): boolean {
  return delivery.queued_ms + (nowMs - delivery.claimed_at_ms) > lifetimeMs;
}

function reasonOf(cause: EndCause, attempts: number): string {
  if (cause.kind === 'lease_lost') return LEASE_LOST_REASON;
  if (cause.kind === 'expired') {
    return `in the queue since ${cause.queuedSince.toISOString()}, longer than MAIL_QUEUE_LIFETIME (${lifetimeText(cause.lifetimeMs)}) without being sent; last: ${cause.reason}`;
  }
  if (cause.kind === 'ladder_spent') return `retry ladder exhausted after ${attempts} attempts; last: ${cause.reason}`;
  return cause.reason;
}

/** How `delivery` ends for `cause`: its final status, the reason recorded, and its bounce. */
export function failForGood(context: BounceContext, delivery: FailedDelivery, cause: EndCause): Ending {
  const reason = storableText(reasonOf(cause, delivery.attempts), { maxChars: MAX_REASON_CHARS });
  const failure =
    cause.kind === 'lease_lost'
      ? // Whether the relay answered the lost attempt is not known: no reply, no Remote-MTA.
        { deadLettered: true, reason, reply: null, remoteMta: null }
      : { deadLettered: cause.kind !== 'refused', expired: cause.kind === 'expired', reason, reply: cause.reply, remoteMta: cause.remoteMta };
  return { status: statusOf(cause), reason, bounce: bounceFor(context, delivery, failure) };
}

/** How a delivery whose lease was lost with the ladder spent ends (the lease reclaim dead-letters
 *  it in SQL): its reason and bounce, built from the reclaimed row and its message. */
export function lostLeaseEnding(context: BounceContext): (delivery: ReclaimedDelivery, payload: MessagePayload | null) => Ending {
  return (delivery, payload) =>
    failForGood(
      context,
      {
        id: delivery.id,
        messageId: delivery.message_id,
        payloadMode: delivery.payload_mode,
        category: delivery.category,
        envelopeFrom: delivery.envelope_from,
        recipient: delivery.recipient,
        attempts: delivery.attempt_count,
        // Retention keeps a payload while its delivery waits; if it is gone anyway, the bounce
        // still goes out, without the original headers.
        raw: payload?.raw ?? Buffer.alloc(0),
        receivedAt: payload?.receivedAt ?? delivery.created_at,
        traceparent: delivery.traceparent,
      },
      { kind: 'lease_lost' },
    );
}
