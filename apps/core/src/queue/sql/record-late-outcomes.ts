// A result that finished after its lease ran out (PostgreSQL was away longer than the lease, or the
// watchdog abandoned a send that then finished) is still the truth about that attempt. If nobody
// has started the delivery again — the lease reclaim took it back as outcome_unknown -> retrying
// and no engine has claimed it since (attempt_count is still this attempt's number, unlocked) —
// the outcome_unknown attempt the reclaim wrote for this engine is replaced by the real result and
// the delivery gets the status that result means: a known "sent" ends the delivery instead of
// being sent again (duplicates only when the sending engine is really dead).
// Not covered: an outcome that needs no attempt row (those end before any send, within
// milliseconds), and a lease the reclaim dead-lettered (its dead-letter row and bounce exist).
import type { Queryable } from '@postern/shared';
import { type Outcome, outcomeColumns } from './record-outcomes.ts';

const RECORD_LATE_OUTCOMES_SQL = `
WITH u AS (
  SELECT * FROM unnest($2::uuid[], $3::int[], $4::text[], $5::double precision[], $6::text[],
                       $7::text[], $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::int[])
         AS u(id, attempt_number, status, wait_ms, last_error,
              attempt_status, smtp_code, enhanced_code, smtp_text, started_at, finished_at, duration_ms)),
d AS (
  UPDATE mail.deliveries d
     SET status = u.status,
         next_attempt_at = CASE WHEN u.status = 'retrying' THEN now() + u.wait_ms * interval '1 millisecond' END,
         finished_at = CASE WHEN u.status = 'retrying' THEN d.finished_at ELSE now() END,
         updated_at = now(), last_error = u.last_error
    FROM u
   WHERE d.id = u.id AND d.status = 'retrying' AND d.locked_by IS NULL AND d.attempt_count = u.attempt_number
     AND u.attempt_status IS NOT NULL
     AND EXISTS (SELECT 1 FROM mail.attempts x
                  WHERE x.delivery_id = d.id AND x.attempt_number = u.attempt_number
                    AND x.status = 'outcome_unknown' AND x.worker_id = $1)
  RETURNING d.id),
a AS (
  UPDATE mail.attempts x
     SET status = u.attempt_status, smtp_code = u.smtp_code, enhanced_code = u.enhanced_code, smtp_text = u.smtp_text,
         started_at = u.started_at, finished_at = u.finished_at, duration_ms = u.duration_ms
    FROM d JOIN u ON u.id = d.id
   WHERE x.delivery_id = d.id AND x.attempt_number = u.attempt_number
  RETURNING x.id, x.delivery_id),
dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id)
  SELECT a.delivery_id, u.last_error, a.id
    FROM a JOIN u ON u.id = a.delivery_id
   WHERE u.status = 'dead_letter'
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = EXCLUDED.last_attempt_id, created_at = now(),
         requeued_at = NULL, requeued_by = NULL)
SELECT id FROM d`;

/** Records the late outcomes whose delivery nobody has started again; returns their ids. */
export async function recordLateOutcomes(db: Queryable, workerId: string, outcomes: readonly Outcome[]): Promise<Set<string>> {
  const late = outcomes.filter((outcome) => outcome.attempt !== null);
  if (late.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>({
    name: 'postern_record_late_outcomes',
    text: RECORD_LATE_OUTCOMES_SQL,
    values: [workerId, ...outcomeColumns(late)],
  });
  return new Set(rows.map((row) => row.id));
}
