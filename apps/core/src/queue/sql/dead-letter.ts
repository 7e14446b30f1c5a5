// The ladder is spent: the delivery becomes `dead_letter`, with its last attempt's row and exactly
// one dead_letters row (seed 002: "each dead-lettered delivery has a matching dead-letter entry").
// A delivery requeued by an operator and exhausted again updates its existing row (UNIQUE
// delivery_id) instead of adding a second.
import type { Queryable } from '@postern/shared';
import { type AttemptRecord, attemptValues, INSERT_ATTEMPT_FROM_D, type LeaseGuard } from './attempt-row.ts';

const DEAD_LETTER_SQL = `
WITH d AS (
  UPDATE mail.deliveries
     SET status = 'dead_letter', finished_at = now(), locked_by = NULL, locked_until = NULL, updated_at = now(),
         last_error = $11
   WHERE id = $1 AND status = 'sending' AND locked_by = $2 AND attempt_count = $3
  RETURNING id, attempt_count),
a AS (${INSERT_ATTEMPT_FROM_D}, delivery_id),
dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id)
  SELECT a.delivery_id, $11, a.id FROM a
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = EXCLUDED.last_attempt_id, created_at = now(),
         requeued_at = NULL, requeued_by = NULL
  RETURNING id)
SELECT (SELECT id FROM a) AS attempt_id, (SELECT id FROM dl) AS dead_letter_id`;

export async function deadLetterDelivery(
  db: Queryable,
  lease: LeaseGuard,
  attempt: AttemptRecord,
  reason: string,
): Promise<{ attemptId: string; deadLetterId: string } | null> {
  const { rows } = await db.query<{ attempt_id: string | null; dead_letter_id: string | null }>({
    name: 'postern_dead_letter',
    text: DEAD_LETTER_SQL,
    values: [lease.deliveryId, lease.workerId, lease.attemptNumber, ...attemptValues(attempt), reason],
  });
  const row = rows[0];
  if (!row?.attempt_id || !row.dead_letter_id) return null;
  return { attemptId: row.attempt_id, deadLetterId: row.dead_letter_id };
}
