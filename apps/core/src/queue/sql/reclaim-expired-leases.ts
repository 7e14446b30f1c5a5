// Leases whose engine died (SIGKILL, machine lost) or stalled past locked_until (seed 004) are taken
// back here, by whichever engine gets there first. What happened to the attempt under way is not
// known — the message may have gone out — so it is recorded as outcome_unknown rather than guessed.
// The delivery goes back to `retrying`, due at once; one whose ladder is already spent is
// dead-lettered instead, so a delivery that kills every engine that touches it cannot loop forever.
import type { Queryable } from '@postern/shared';

const RECLAIM_SQL = `
WITH expired AS (
  SELECT id, locked_by, locked_until, attempt_count FROM mail.deliveries
   WHERE status = 'sending' AND locked_until < now()
   ORDER BY locked_until
   LIMIT $1
   FOR UPDATE SKIP LOCKED),
d AS (
  UPDATE mail.deliveries d
     SET status = CASE WHEN expired.attempt_count >= $2 THEN 'dead_letter' ELSE 'retrying' END,
         next_attempt_at = CASE WHEN expired.attempt_count >= $2 THEN NULL ELSE now() END,
         finished_at = CASE WHEN expired.attempt_count >= $2 THEN now() END,
         locked_by = NULL, locked_until = NULL, updated_at = now(),
         last_error = 'lease expired before the attempt was recorded: outcome unknown'
    FROM expired
   WHERE d.id = expired.id
  RETURNING d.id, d.status, expired.locked_by AS lost_by, expired.locked_until AS lost_until, expired.attempt_count),
a AS (
  INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_text, worker_id, started_at, finished_at, duration_ms)
  SELECT id, attempt_count, 'outcome_unknown',
         'lease expired (engine ' || lost_by || ' died or stalled); the message may or may not have been sent',
         lost_by, lost_until - $3::double precision * interval '1 millisecond', now(),
         GREATEST(0, (extract(epoch FROM now() - (lost_until - $3::double precision * interval '1 millisecond')) * 1000)::int)
    FROM d
  ON CONFLICT (delivery_id, attempt_number) DO NOTHING
  RETURNING id, delivery_id),
dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id)
  SELECT d.id, 'retry ladder exhausted (last attempt lost with its lease)', a.id
    FROM d LEFT JOIN a ON a.delivery_id = d.id
   WHERE d.status = 'dead_letter'
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = EXCLUDED.last_attempt_id, created_at = now(),
         requeued_at = NULL, requeued_by = NULL
  RETURNING delivery_id)
SELECT (SELECT count(*) FROM d)::int AS reclaimed, (SELECT count(*) FROM dl)::int AS dead_lettered`;

export async function reclaimExpiredLeases(
  db: Queryable,
  limit: number,
  maxAttempts: number,
  leaseMs: number,
): Promise<{ reclaimed: number; deadLettered: number }> {
  const { rows } = await db.query<{ reclaimed: number; dead_lettered: number }>({
    name: 'postern_reclaim_expired_leases',
    text: RECLAIM_SQL,
    values: [limit, maxAttempts, leaseMs],
  });
  return { reclaimed: rows[0]?.reclaimed ?? 0, deadLettered: rows[0]?.dead_lettered ?? 0 };
}
