// The last resort of the completion batcher (completion-batcher.ts): an outcome PostgreSQL refused
// to record even alone is written again with only what cannot fail — the status and a reason the
// caller made storable — and without the attempt row and the bounce (the parts built from outside
// text). Guarded like record-outcomes.ts: nothing is written if this engine lost the lease.
import type { Queryable } from '@postern/shared';
import type { OutcomeStatus } from './record-outcomes.ts';

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

/** True if recorded; false if the lease had been lost (nothing written). `status` is final here:
 *  never 'retrying' (fail-for-good.ts unrecordableOutcome()). */
export async function recordBareOutcome(
  db: Queryable,
  workerId: string,
  outcome: { deliveryId: string; attemptNumber: number; status: Exclude<OutcomeStatus, 'retrying'>; lastError: string },
): Promise<boolean> {
  const { rows } = await db.query({
    name: 'postern_record_bare_outcome',
    text: RECORD_BARE_OUTCOME_SQL,
    values: [outcome.deliveryId, workerId, outcome.attemptNumber, outcome.status, outcome.lastError],
  });
  return rows.length > 0;
}
