// A temporary failure puts the delivery back on the retry ladder: status `retrying`, due after the
// ladder's wait, lease released, with the failed attempt's row — one statement.
// releaseClaims gives back deliveries claimed but never started (shutdown): no attempt was made,
// so the attempt number is returned and they are due again at once, for any engine.
import type { Queryable } from '@postern/shared';
import { type AttemptRecord, attemptValues, INSERT_ATTEMPT_FROM_D, type LeaseGuard } from './attempt-row.ts';

const DEFER_SQL = `
WITH d AS (
  UPDATE mail.deliveries
     SET status = 'retrying', next_attempt_at = now() + $11::double precision * interval '1 millisecond',
         locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = $12
   WHERE id = $1 AND status = 'sending' AND locked_by = $2 AND attempt_count = $3
  RETURNING id, attempt_count)
${INSERT_ATTEMPT_FROM_D}`;

export async function deferDelivery(
  db: Queryable,
  lease: LeaseGuard,
  waitMs: number,
  attempt: AttemptRecord,
  lastError: string,
): Promise<string | null> {
  const { rows } = await db.query<{ id: string }>({
    name: 'postern_defer_delivery',
    text: DEFER_SQL,
    values: [lease.deliveryId, lease.workerId, lease.attemptNumber, ...attemptValues(attempt), waitMs, lastError],
  });
  return rows[0]?.id ?? null;
}

const RELEASE_SQL = `
UPDATE mail.deliveries
   SET status = CASE WHEN attempt_count > 1 THEN 'retrying' ELSE 'queued' END,
       attempt_count = attempt_count - 1, next_attempt_at = now(),
       locked_by = NULL, locked_until = NULL, updated_at = now()
 WHERE id = ANY($1::uuid[]) AND status = 'sending' AND locked_by = $2`;

export async function releaseClaims(db: Queryable, workerId: string, deliveryIds: readonly string[]): Promise<number> {
  if (deliveryIds.length === 0) return 0;
  const result = await db.query(RELEASE_SQL, [deliveryIds, workerId]);
  return result.rowCount ?? 0;
}
