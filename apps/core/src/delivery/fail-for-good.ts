// The one path by which a delivery ends without being sent: whether it is `failed` or
// `dead_letter`, the reason recorded, and the bounce for accepted mail (bounce.ts). Three callers
// reach it — an attempt the relay refused for good, an attempt that spent the retry ladder (both in
// attempt-worker.ts, written by the completion batcher), and a lease that ran out with the ladder
// spent (queue/reclaim-leases.ts) — and a fourth, the isolation of an outcome that cannot be
// recorded at all (completion-batcher.ts). Before, the worker and the reclaim each built their own
// dead letter and bounce; a fix to one (the NUL Subject that failed the bounce insert) missed the other.
import { describeDbError, storableText } from '@postern/shared';
import type { BounceToStore } from '../queue/sql/insert-bounce.ts';
import type { OutcomeStatus } from '../queue/sql/record-outcomes.ts';
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
  | { kind: 'lease_lost' };

type Reply = { code: number | null; enhanced: string | null; text: string };

export interface Ending {
  status: FinalStatus;
  /** last_error and, for a dead letter, its reason: storable and at most MAX_REASON_CHARS. */
  reason: string;
  /** The DSN to queue with the ending, or null (not accepted mail, null sender, a bounce). */
  bounce: BounceToStore | null;
}

/** deliveries.last_error and dead_letters.reason: long enough for a reply, bounded for the API. */
export const MAX_REASON_CHARS = 1_000;

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

function reasonOf(cause: EndCause, attempts: number): string {
  if (cause.kind === 'lease_lost') return LEASE_LOST_REASON;
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
      : { deadLettered: cause.kind === 'ladder_spent', reason, reply: cause.reply, remoteMta: cause.remoteMta };
  return { status: statusOf(cause), reason, bounce: bounceFor(context, delivery, failure) };
}

/**
 * The outcome of an attempt that PostgreSQL refuses to record even alone (completion-batcher.ts):
 * written again without the parts that can fail — no attempt row, no bounce — with the refusal as
 * its reason. The status keeps what is known: a `sent` stays sent (calling it failed would invite
 * an operator to requeue, and the recipient would get it twice), a `suppressed` stays suppressed; a
 * `failed` or `dead_letter` keeps its status but loses its bounce; a `retrying` ends as a dead
 * letter, visible and requeueable, rather than coming back to fail the same way.
 */
export function unrecordableOutcome(
  intended: { status: OutcomeStatus; lastError: string | null },
  error: unknown,
): { status: Exclude<OutcomeStatus, 'retrying'>; lastError: string } {
  const status = intended.status === 'retrying' ? 'dead_letter' : intended.status;
  const was = intended.lastError ? `${intended.status}: ${intended.lastError}` : intended.status;
  const lastError = storableText(`could not record outcome (${was}): ${describeDbError(error)}`, { maxChars: MAX_REASON_CHARS });
  return { status, lastError };
}
