// A delivery reaches a final status after an attempt: sent, failed (permanent reply) or suppressed
// (the provider refused the recipient by policy). One statement — the guarded UPDATE and its attempt
// row — so both commit or neither does. The guard (status='sending' AND locked_by=me AND the attempt
// number) makes a worker whose lease expired and was taken over change nothing.
import type { Queryable } from '@postern/shared';
import { type AttemptRecord, attemptValues, INSERT_ATTEMPT_FROM_D, type LeaseGuard } from './attempt-row.ts';

const COMPLETE_SQL = `
WITH d AS (
  UPDATE mail.deliveries
     SET status = $11, finished_at = now(), locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = $12
   WHERE id = $1 AND status = 'sending' AND locked_by = $2 AND attempt_count = $3
  RETURNING id, attempt_count)
${INSERT_ATTEMPT_FROM_D}`;

/** Returns the attempt id, or null when the lease was lost (nothing changed). */
export async function completeAttempt(
  db: Queryable,
  lease: LeaseGuard,
  final: 'sent' | 'failed' | 'suppressed',
  attempt: AttemptRecord,
  lastError: string | null,
): Promise<string | null> {
  const { rows } = await db.query<{ id: string }>({
    name: 'postern_complete_attempt',
    text: COMPLETE_SQL,
    values: [lease.deliveryId, lease.workerId, lease.attemptNumber, ...attemptValues(attempt), final, lastError],
  });
  return rows[0]?.id ?? null;
}

const FINISH_UNATTEMPTED_SQL = `
UPDATE mail.deliveries
   SET status = $4, finished_at = now(), locked_by = NULL, locked_until = NULL, updated_at = now(),
       last_error = $5, attempt_count = attempt_count - 1
 WHERE id = $1 AND status = 'sending' AND locked_by = $2 AND attempt_count = $3`;

/** Ends a delivery no attempt was made for (suppression list, stub mode): no attempt row, and the
 *  claim's attempt number is given back. */
export async function finishUnattempted(
  db: Queryable,
  lease: LeaseGuard,
  final: 'suppressed' | 'failed',
  reason: string,
): Promise<boolean> {
  const result = await db.query({
    name: 'postern_finish_unattempted',
    text: FINISH_UNATTEMPTED_SQL,
    values: [lease.deliveryId, lease.workerId, lease.attemptNumber, final, reason],
  });
  return result.rowCount === 1;
}
