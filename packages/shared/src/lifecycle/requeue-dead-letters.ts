// Requeue: the status change dead_letter -> queued, asked for by an operator (the API's
// requeueDeadLetter), due at once. One delivery by id, or the oldest matches of a filter up to a
// number the caller caps. Each delivery moves in one guarded UPDATE (status = 'dead_letter'), and
// its dead-letter row is marked in the same statement; two operators requeueing together requeue
// each delivery once (SKIP LOCKED: the second takes the next matches, not the same ones).
// attempt_count is kept: the engine numbers attempts from it, and the attempts table is unique on
// (delivery_id, attempt_number). queued_since is reset: a requeued delivery starts a new queue
// lifetime (MAIL_QUEUE_LIFETIME), or one dead-lettered for its age would be again at its first wait.
import type { Queryable } from '../aliases/index.ts';
import { type DeadLetterFilterValues, deadLetterFilterParams, withDeadLetterFilter } from './dead-letter-filter.ts';

export interface RequeueRequest {
  filter: DeadLetterFilterValues;
  /** Only this delivery (a UUID), or null: any match of the filter. */
  deliveryId: string | null;
  /** Requeue at most this many, oldest dead letter first. */
  max: number;
  /** Recorded as dead_letters.requeued_by. */
  requeuedBy: string;
}

// $1..$5 the dead-letter filter, $6 one delivery's id (null: any), $7 how many at most, $8 who requeues.
const REQUEUE_SQL = withDeadLetterFilter(`
WITH target AS (
  SELECT dd.id AS dead_letter_id, dl.id AS delivery_id
    FROM mail.dead_letters dd JOIN mail.deliveries dl ON dl.id = dd.delivery_id
   WHERE /*DEAD_LETTER_FILTER*/
     AND ($6::uuid IS NULL OR dl.id = $6::uuid)
     AND dl.status = 'dead_letter'
   ORDER BY dd.created_at, dd.id
   LIMIT $7
   FOR UPDATE OF dl SKIP LOCKED),
moved AS (
  UPDATE mail.deliveries dl
     SET status = 'queued', next_attempt_at = now(), finished_at = NULL, locked_by = NULL, locked_until = NULL,
         queued_since = now(), updated_at = now()
    FROM target
   WHERE dl.id = target.delivery_id AND dl.status = 'dead_letter'
  RETURNING dl.id, dl.created_at),
marked AS (
  UPDATE mail.dead_letters dd SET requeued_at = now(), requeued_by = $8::text
    FROM target WHERE dd.id = target.dead_letter_id AND target.delivery_id IN (SELECT id FROM moved))
SELECT id::text AS id FROM moved ORDER BY created_at, id`);

/** The ids of the deliveries requeued, oldest first; none if nothing matched (or all were taken). */
export async function requeueDeadLetters(db: Queryable, request: RequeueRequest): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(REQUEUE_SQL, [
    ...deadLetterFilterParams(request.filter),
    request.deliveryId,
    request.max,
    request.requeuedBy,
  ]);
  return rows.map((row) => row.id);
}
