// Cancel: the status change queued|retrying -> cancelled, asked for by an operator (the API's
// cancelDelivery). Only while the delivery is still waiting: the guarded UPDATE races fairly with an
// engine's claim — whichever commits first wins — and a delivery being sent (a live lease) or
// already finished is left as it is, never half-cancelled; the caller reads why.
import type { Queryable } from '../aliases/index.ts';

const CANCEL_SQL = `
UPDATE mail.deliveries
   SET status = 'cancelled', next_attempt_at = NULL, finished_at = now(), updated_at = now(),
       last_error = $2
 WHERE id = $1::uuid AND status IN ('queued', 'retrying')
RETURNING id`;

/** True if `deliveryId` (a UUID) was waiting and is now cancelled, with `reason` as its last_error. */
export async function cancelDelivery(db: Queryable, deliveryId: string, reason: string): Promise<boolean> {
  const { rows } = await db.query(CANCEL_SQL, [deliveryId, reason]);
  return rows.length > 0;
}
