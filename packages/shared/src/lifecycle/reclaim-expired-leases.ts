// Reclaim expired: the status change sending -> retrying | dead_letter of a lease nobody renewed.
// Leases whose engine died (SIGKILL, machine lost) or stalled past locked_until (stalled-worker,
// docs/incidents.md) are taken back here, by whichever engine gets there first. What happened to
// the attempt under way is not known — the message may have gone out — so it is recorded as
// outcome_unknown rather than guessed. The delivery goes back to `retrying`, due at once; one whose
// ladder is already spent is dead-lettered instead, so a delivery that kills every engine that
// touches it cannot loop forever.
// Never taken back: the leases the calling engine still holds for live work ($4,
// apps/core/src/queue/live-leases.ts) — expired only because PostgreSQL was away longer than the
// lease and renewal could not reach it; their sends' outcomes are about to be recorded, and taking
// them back would re-send them.
// Every row taken back is returned: the caller (apps/core/src/queue/reclaim-leases.ts) bounces the
// dead-lettered mail the edge accepted in the same transaction (fail-for-good.ts). `only` restricts
// a pass to the given deliveries: the caller's row-by-row retry of a pass that failed (poison
// isolation).
import type { Queryable } from '../aliases/index.ts';
import type { DeliveryStatus, PayloadMode } from './statuses.ts';

const RECLAIM_SQL = `
WITH expired AS (
  SELECT id, locked_by, locked_until, attempt_count FROM mail.deliveries
   WHERE status = 'sending' AND locked_until < now()
     AND id <> ALL($4::uuid[]) AND ($5::uuid[] IS NULL OR id = ANY($5::uuid[]))
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
  RETURNING d.id, d.status, expired.locked_by AS lost_by, expired.locked_until AS lost_until, expired.attempt_count,
            d.payload_mode, d.message_id, d.category, d.recipient, d.envelope_from, d.created_at, d.traceparent),
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
SELECT id, status, attempt_count, payload_mode, message_id, category, recipient, envelope_from, created_at, traceparent FROM d`;

export interface ReclaimedDelivery {
  id: string;
  /** 'retrying' (due again at once) or 'dead_letter' (the ladder was spent). */
  status: Extract<DeliveryStatus, 'retrying' | 'dead_letter'>;
  attempt_count: number;
  payload_mode: PayloadMode;
  message_id: string | null;
  category: string | null;
  recipient: string;
  envelope_from: string;
  created_at: Date;
  /** The trace the delivery continues (its bounce continues it too). */
  traceparent: string | null;
}

/** Data-modifying CTEs run to completion whether or not the final SELECT reads them (PostgreSQL
 *  docs, 7.8.4): the attempt and dead-letter rows are written for every row returned. */
export async function reclaimExpiredLeases(
  db: Queryable,
  limit: number,
  maxAttempts: number,
  leaseMs: number,
  liveIds: readonly string[] = [],
  only: readonly string[] | null = null,
): Promise<ReclaimedDelivery[]> {
  const { rows } = await db.query<ReclaimedDelivery>({
    name: 'postern_reclaim_expired_leases',
    text: RECLAIM_SQL,
    values: [limit, maxAttempts, leaseMs, liveIds, only],
  });
  return rows;
}

const EXPIRED_LEASES_SQL = `
SELECT id FROM mail.deliveries
 WHERE status = 'sending' AND locked_until < now() AND NOT (id = ANY($2::uuid[]))
 ORDER BY locked_until
 LIMIT $1`;

/** The deliveries a pass would take back, oldest lease first, but those in `except` (for the
 *  row-by-row retry, which pages past the rows it had to skip). */
export async function expiredLeaseIds(db: Queryable, limit: number, except: readonly string[] = []): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>({ name: 'postern_expired_lease_ids', text: EXPIRED_LEASES_SQL, values: [limit, except] });
  return rows.map((row) => row.id);
}
