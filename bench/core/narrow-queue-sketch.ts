// A sketch, not Postern's schema: how fast would the claim and the outcome be if due work lived in
// a narrow table of its own, claimed and deleted as graphile-worker does, with mail.deliveries
// written once per outcome instead of twice (today the claim and the outcome each rewrite the wide
// row, adding an entry to each of its indexes)? The bench runs it beside "SQL alone" (the engine's
// real statements, engine-adapter.ts) on the same database, so the two figures compare the shapes of
// the queue and nothing else. What the sketch leaves out, and a real change would have to carry:
// the 'sending' status and its lease on the delivery (here only on the due row), the suppression
// and message columns of the claim, retries (a retry would update run_at instead of deleting),
// the late-outcome path, dead letters and bounces, reclaim, cancel and requeue.
import type pg from 'pg';
import { enqueueDeliveries } from './deliveries.ts';

const CREATE = `
CREATE SCHEMA IF NOT EXISTS bench_sketch;
CREATE TABLE IF NOT EXISTS bench_sketch.due (
  delivery_id  uuid PRIMARY KEY REFERENCES mail.deliveries (id) ON DELETE CASCADE,
  run_at       timestamptz NOT NULL,
  locked_by    text,
  locked_until timestamptz,
  attempt      integer NOT NULL DEFAULT 0)
  WITH (fillfactor = 70);
-- No predicate on the lease columns and room on each page: a claim changes no indexed column, so
-- its update is HOT (no index entry added); the few leased rows are skipped by the claim's filter.
CREATE INDEX IF NOT EXISTS due_run_at_idx ON bench_sketch.due (run_at)`;

const CLAIM = `
WITH due AS (
  SELECT delivery_id FROM bench_sketch.due
   WHERE locked_by IS NULL AND run_at <= now()
   ORDER BY run_at
   LIMIT $2
   FOR UPDATE SKIP LOCKED),
leased AS (
  UPDATE bench_sketch.due q
     SET locked_by = $1, locked_until = now() + interval '60 seconds', attempt = q.attempt + 1
    FROM due
   WHERE q.delivery_id = due.delivery_id
  RETURNING q.delivery_id, q.attempt)
SELECT d.id, d.payload_mode, d.subject, d.text_body, d.recipient, d.envelope_from, d.rfc_message_id, leased.attempt,
       (SELECT s.reason FROM mail.suppressions s
         WHERE s.address = d.recipient AND (s.expires_at IS NULL OR s.expires_at > now())) AS suppressed_reason
  FROM leased JOIN mail.deliveries d ON d.id = leased.delivery_id`;

const OUTCOME = `
WITH u AS (SELECT * FROM unnest($2::uuid[], $3::int[]) AS u(id, attempt_number)),
done AS (
  DELETE FROM bench_sketch.due q USING u
   WHERE q.delivery_id = u.id AND q.locked_by = $1 AND q.attempt = u.attempt_number
  RETURNING q.delivery_id),
d AS (
  UPDATE mail.deliveries d
     SET status = 'sent', next_attempt_at = NULL, finished_at = now(), attempt_count = u.attempt_number, updated_at = now()
    FROM done JOIN u ON u.id = done.delivery_id
   WHERE d.id = done.delivery_id
  RETURNING d.id),
a AS (
  INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                             started_at, finished_at, duration_ms)
  SELECT d.id, u.attempt_number, 'sent', 250, '2.0.0', 'ok', $1, now(), now(), 0
    FROM d JOIN u ON u.id = d.id)
SELECT id FROM d`;

/** Queues `count` deliveries (as enqueueDeliveries does) with a due row each. */
export async function enqueueSketch(pool: pg.Pool, count: number, label: string): Promise<void> {
  await pool.query(CREATE);
  const ids = await enqueueDeliveries(pool, count, label);
  await pool.query('INSERT INTO bench_sketch.due (delivery_id, run_at) SELECT unnest($1::uuid[]), now()', [ids]);
  await pool.query('VACUUM ANALYZE bench_sketch.due');
}

/** The sketch's claim and outcome in a bare loop of `clients` clients, as sqlAloneLoop runs the
 *  engine's own; returns how many deliveries it finished. */
export async function sketchLoop(pool: pg.Pool, clients: number, batch: number): Promise<number> {
  let finished = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, index) => {
      const me = `bench-sketch-${index}`;
      for (;;) {
        const { rows } = await pool.query<{ id: string; attempt: number }>({ name: 'bench_sketch_claim', text: CLAIM, values: [me, batch] });
        if (rows.length === 0) return;
        const done = await pool.query({
          name: 'bench_sketch_outcome',
          text: OUTCOME,
          values: [me, rows.map((row) => row.id), rows.map((row) => row.attempt)],
        });
        finished += done.rowCount ?? 0;
      }
    }),
  );
  return finished;
}
