// Record outcomes: the status change sending -> sent | failed | suppressed | retrying | dead_letter
// for many attempts in ONE statement (and so one transaction, one WAL flush): every outcome,
// the unattempted ends too (suppression list, stub mode, unbuildable), is a row of the arrays
// below, so the engine finishes attempts faster than PostgreSQL flushes its WAL once per delivery
// (docs/core.md, "Batched completion"); graphile-worker's completeJobs/failJobs take the same
// set-based approach.
//
// The guard is the same as for a single row: a delivery changes only while it is still 'sending'
// under this engine's lease for this attempt number. A row whose lease was lost (expired and taken
// back by reclaim-expired-leases.ts, maybe already claimed again) is simply not joined: nothing of
// it is written, and its id is missing from the returned set. The attempt row and the dead-letter
// row are inserted only for deliveries the UPDATE changed, in the same statement.
//
// A result that finished after its lease ran out (PostgreSQL was away longer than the lease, or the
// watchdog abandoned a send that then finished) is still the truth about that attempt: the late
// statement records it if nobody has started the delivery again — the lease reclaim took it back
// as outcome_unknown -> retrying and no engine has claimed it since (attempt_count is still this
// attempt's number, unlocked). The outcome_unknown attempt the reclaim wrote for this engine is
// replaced by the real result and the delivery gets the status that result means: a known "sent"
// ends the delivery instead of being sent again (duplicates only when the sending engine is really
// dead). Not covered: an outcome that needs no attempt row (those end before any send, within
// milliseconds), and a lease the reclaim dead-lettered (its dead-letter row and bounce exist).
//
// Both statements read the same arrays and write dead letters the same way: those parts are
// written once below and put into each statement when this module loads (fillMark).
import type { Queryable } from '../aliases/index.ts';
import { fillMark } from '../db/sql-marks.ts';
import { storableTextOrNull } from '../text/storable-text.ts';
import { type AttemptRecord, attemptValues } from './attempt-row.ts';
import type { BounceToStore } from './fail-for-good.ts';
import type { DeliveryStatus } from './statuses.ts';

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

export interface OutcomeToRecord extends Outcome {
  /** For accepted mail that failed for good: its DSN, queued with the failure (fail-for-good.ts). */
  bounce: BounceToStore | null;
}

/** The outcomes as rows `u`: $2..$16, one array per column (outcomeColumns). */
const OUTCOME_ROWS = `u AS (
  SELECT * FROM unnest($2::uuid[], $3::int[], $4::text[], $5::double precision[], $6::text[],
                       $7::text[], $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::int[],
                       $14::text[], $15::text[], $16::text[])
         AS u(id, attempt_number, status, wait_ms, last_error,
              attempt_status, smtp_code, enhanced_code, smtp_text, started_at, finished_at, duration_ms,
              route_domain, route_relay, route_tls))`;

/** The status columns an outcome sets, whichever statement records it. */
const OUTCOME_STATUS = `status = u.status,
         next_attempt_at = CASE WHEN u.status = 'retrying' THEN now() + u.wait_ms * interval '1 millisecond' END,
         finished_at = CASE WHEN u.status = 'retrying' THEN d.finished_at ELSE now() END`;

/** The dead-letter row of every delivery `d` whose outcome is dead_letter, naming its recorded
 *  attempt `a` if it has one (a delivery whose queue lifetime ran out while it waited ends without
 *  an attempt: its row is still written, or it would be a dead letter no list shows and no operator
 *  can requeue): one per delivery, reset if the delivery had been dead-lettered and requeued before. */
const OUTCOME_DEAD_LETTERS = `dl AS (
  INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id)
  SELECT d.id, u.last_error, a.id
    FROM d JOIN u ON u.id = d.id LEFT JOIN a ON a.delivery_id = d.id
   WHERE u.status = 'dead_letter'
  ON CONFLICT (delivery_id) DO UPDATE
     SET reason = EXCLUDED.reason, last_attempt_id = EXCLUDED.last_attempt_id, created_at = now(),
         requeued_at = NULL, requeued_by = NULL)`;

function withOutcomeParts(template: string): string {
  return fillMark(fillMark(fillMark(template, 'OUTCOME_ROWS', OUTCOME_ROWS), 'OUTCOME_STATUS', OUTCOME_STATUS), 'OUTCOME_DEAD_LETTERS', OUTCOME_DEAD_LETTERS);
}

const RECORD_OUTCOMES_SQL = withOutcomeParts(`
WITH /*OUTCOME_ROWS*/,
d AS (
  UPDATE mail.deliveries d
     SET /*OUTCOME_STATUS*/,
         attempt_count = CASE WHEN u.attempt_status IS NULL THEN d.attempt_count - 1 ELSE d.attempt_count END,
         locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = u.last_error
    FROM u
   WHERE d.id = u.id AND d.status = 'sending' AND d.locked_by = $1 AND d.attempt_count = u.attempt_number
  RETURNING d.id),
a AS (
  INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                             started_at, finished_at, duration_ms, route_domain, route_relay, route_tls)
  SELECT u.id, u.attempt_number, u.attempt_status, u.smtp_code, u.enhanced_code, u.smtp_text, $1,
         u.started_at, u.finished_at, u.duration_ms, u.route_domain, u.route_relay, u.route_tls
    FROM d JOIN u ON u.id = d.id
   WHERE u.attempt_status IS NOT NULL
  RETURNING id, delivery_id),
/*OUTCOME_DEAD_LETTERS*/
SELECT id FROM d`);

const RECORD_LATE_OUTCOMES_SQL = withOutcomeParts(`
WITH /*OUTCOME_ROWS*/,
d AS (
  UPDATE mail.deliveries d
     SET /*OUTCOME_STATUS*/,
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
         started_at = u.started_at, finished_at = u.finished_at, duration_ms = u.duration_ms,
         route_domain = u.route_domain, route_relay = u.route_relay, route_tls = u.route_tls
    FROM d JOIN u ON u.id = d.id
   WHERE x.delivery_id = d.id AND x.attempt_number = u.attempt_number
  RETURNING x.id, x.delivery_id),
/*OUTCOME_DEAD_LETTERS*/
SELECT id FROM d`);

/** The outcomes as the fifteen arrays $2..$16 that both statements unnest, in the order of their
 *  `u` columns. */
function outcomeColumns(outcomes: readonly Outcome[]): unknown[][] {
  const columns: unknown[][] = Array.from({ length: 15 }, () => []);
  for (const outcome of outcomes) {
    const attempt = outcome.attempt ? attemptValues(outcome.attempt) : [null, null, null, null, null, null, null, null, null, null];
    // last_error quotes the relay's reply: storable, like the attempt's text (attempt-row.ts).
    const lastError = storableTextOrNull(outcome.lastError, { maxChars: 1_000 });
    const row = [outcome.deliveryId, outcome.attemptNumber, outcome.status, outcome.waitMs, lastError, ...attempt];
    for (let i = 0; i < row.length; i += 1) columns[i]?.push(row[i]);
  }
  return columns;
}

/** Runs one of the statements above over `outcomes`; returns the ids it changed. */
async function record(db: Queryable, statement: { name: string; text: string }, workerId: string, outcomes: readonly Outcome[]): Promise<Set<string>> {
  if (outcomes.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>({ ...statement, values: [workerId, ...outcomeColumns(outcomes)] });
  return new Set(rows.map((row) => row.id));
}

/** Records every outcome whose lease this engine still holds; returns the ids that were recorded
 *  (the others lost their lease and were left untouched). */
export function recordOutcomes(db: Queryable, workerId: string, outcomes: readonly Outcome[]): Promise<Set<string>> {
  return record(db, { name: 'postern_record_outcomes', text: RECORD_OUTCOMES_SQL }, workerId, outcomes);
}

/** Records the late outcomes whose delivery nobody has started again; returns their ids. */
export function recordLateOutcomes(db: Queryable, workerId: string, outcomes: readonly Outcome[]): Promise<Set<string>> {
  const late = outcomes.filter((outcome) => outcome.attempt !== null);
  return record(db, { name: 'postern_record_late_outcomes', text: RECORD_LATE_OUTCOMES_SQL }, workerId, late);
}
