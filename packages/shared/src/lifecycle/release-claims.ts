// Release: deliveries claimed but never started (an engine shutting down) are given back,
// sending -> queued|retrying. No attempt was made, so the attempt number is returned and they are
// due again at once, for any engine. Guarded by the lease: only this engine's own claims.
import type { Queryable } from '../aliases/index.ts';

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
