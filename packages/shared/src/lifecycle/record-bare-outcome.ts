// Record an outcome bare: the last resort of the engine's completion batcher. An outcome PostgreSQL
// refused to record even alone is written again with only what cannot fail — the status and a
// reason made storable here — and without the attempt row and the bounce (the parts built from
// outside text). Guarded like record-outcomes.ts: nothing is written if this engine lost the lease.
import type { Queryable } from '../aliases/index.ts';
import { describeDbError } from '../db/db-errors.ts';
import { storableText } from '../text/storable-text.ts';
import { MAX_REASON_CHARS } from './fail-for-good.ts';
import type { OutcomeStatus } from './record-outcomes.ts';

/** An outcome as it can still be recorded: a final status and the refusal as its reason. */
export interface BareOutcome {
  deliveryId: string;
  attemptNumber: number;
  status: Exclude<OutcomeStatus, 'retrying'>;
  lastError: string;
}

/**
 * What is recorded of an outcome PostgreSQL refuses to record even alone: the status keeps what is
 * known — a `sent` stays sent (calling it failed would invite an operator to requeue, and the
 * recipient would get it twice), a `suppressed` stays suppressed; a `failed` or `dead_letter`
 * keeps its status but loses its bounce; a `retrying` ends as a dead letter, visible and
 * requeueable, rather than coming back to fail the same way — and the refusal is its reason.
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

const RECORD_BARE_OUTCOME_SQL = `
WITH d AS (
  UPDATE mail.deliveries
     SET status = $4::text, next_attempt_at = NULL, finished_at = now(),
         locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = $5
   WHERE id = $1 AND status = 'sending' AND locked_by = $2 AND attempt_count = $3
  RETURNING id),
dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason)
  SELECT id, $5 FROM d WHERE $4::text = 'dead_letter'
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = NULL, created_at = now(), requeued_at = NULL, requeued_by = NULL)
SELECT id FROM d`;

/** True if recorded; false if the lease had been lost (nothing written). */
export async function recordBareOutcome(db: Queryable, workerId: string, outcome: BareOutcome): Promise<boolean> {
  const { rows } = await db.query({
    name: 'postern_record_bare_outcome',
    text: RECORD_BARE_OUTCOME_SQL,
    values: [outcome.deliveryId, workerId, outcome.attemptNumber, outcome.status, outcome.lastError],
  });
  return rows.length > 0;
}
