// The outcomes of many attempts, recorded in ONE statement (and so one transaction, one WAL flush):
// every status change — sent, failed, suppressed, retrying, dead_letter, and the unattempted ends
// (suppression list, stub mode, unbuildable) — is a row of the arrays below. Before this, each
// finished attempt was its own transaction, and the engine could not finish attempts faster than
// PostgreSQL could flush its WAL once per delivery (docs/core.md, "Batched completion"); graphile-
// worker's completeJobs/failJobs take the same set-based approach.
//
// The guard is the same as for a single row: a delivery changes only while it is still 'sending'
// under this engine's lease for this attempt number. A row whose lease was lost (expired and taken
// back by reclaim-expired-leases.ts, maybe already claimed again) is simply not joined: nothing of
// it is written, and its id is missing from the returned set. The attempt row and the dead-letter
// row are inserted only for deliveries the UPDATE changed, in the same statement.
import { type DeliveryStatus, type Queryable, storableTextOrNull } from '@postern/shared';
import { type AttemptRecord, attemptValues } from './attempt-row.ts';

/** The statuses an attempt's outcome moves a 'sending' delivery to. */
export type OutcomeStatus = Extract<DeliveryStatus, 'sent' | 'failed' | 'suppressed' | 'retrying' | 'dead_letter'>;

export interface Outcome {
  deliveryId: string;
  /** The claimed attempt number (the guard's attempt_count). */
  attemptNumber: number;
  status: OutcomeStatus;
  /** The attempt made, or null for a delivery ended without one (its attempt number is given back). */
  attempt: AttemptRecord | null;
  /** retrying: due again after this long. */
  waitMs: number;
  /** last_error; for dead_letter also the dead-letter reason. */
  lastError: string | null;
}

const RECORD_OUTCOMES_SQL = `
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
         attempt_count = CASE WHEN u.attempt_status IS NULL THEN d.attempt_count - 1 ELSE d.attempt_count END,
         locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = u.last_error
    FROM u
   WHERE d.id = u.id AND d.status = 'sending' AND d.locked_by = $1 AND d.attempt_count = u.attempt_number
  RETURNING d.id),
a AS (
  INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                             started_at, finished_at, duration_ms)
  SELECT u.id, u.attempt_number, u.attempt_status, u.smtp_code, u.enhanced_code, u.smtp_text, $1,
         u.started_at, u.finished_at, u.duration_ms
    FROM d JOIN u ON u.id = d.id
   WHERE u.attempt_status IS NOT NULL
  RETURNING id, delivery_id),
dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id)
  SELECT a.delivery_id, u.last_error, a.id
    FROM a JOIN u ON u.id = a.delivery_id
   WHERE u.status = 'dead_letter'
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = EXCLUDED.last_attempt_id, created_at = now(),
         requeued_at = NULL, requeued_by = NULL)
SELECT id FROM d`;

/** The outcomes as the twelve arrays $2..$13 that both this statement and the late one
 *  (record-late-outcomes.ts) unnest, in the order of their `u` columns. */
export function outcomeColumns(outcomes: readonly Outcome[]): unknown[][] {
  const columns: unknown[][] = Array.from({ length: 12 }, () => []);
  for (const outcome of outcomes) {
    const attempt = outcome.attempt ? attemptValues(outcome.attempt) : [null, null, null, null, null, null, null];
    // last_error quotes the relay's reply: storable, like the attempt's text (attempt-row.ts).
    const lastError = storableTextOrNull(outcome.lastError, { maxChars: 1_000 });
    const row = [outcome.deliveryId, outcome.attemptNumber, outcome.status, outcome.waitMs, lastError, ...attempt];
    for (let i = 0; i < row.length; i += 1) columns[i]?.push(row[i]);
  }
  return columns;
}

/** Records every outcome whose lease this engine still holds; returns the ids that were recorded
 *  (the others lost their lease and were left untouched). */
export async function recordOutcomes(db: Queryable, workerId: string, outcomes: readonly Outcome[]): Promise<Set<string>> {
  if (outcomes.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>({
    name: 'postern_record_outcomes',
    text: RECORD_OUTCOMES_SQL,
    values: [workerId, ...outcomeColumns(outcomes)],
  });
  return new Set(rows.map((row) => row.id));
}
