// Retention: payloads and attempts older than MAIL_RETENTION_AGE are purged in small batches (a
// single huge DELETE would hold locks and bloat WAL while the queue is working). A payload is kept
// while any delivery of its message still waits for an attempt, however old. Idempotency
// reservations older than MAIL_IDEMPOTENCY_WINDOW go the same way: past the window a producer's
// retry of the same key is a new delivery, and the table does not grow forever. Heartbeat rows of
// engines silent for a day leave mail.workers (pruneDeadWorkers), so the table lists live engines.
import type { Queryable } from '@postern/shared';
import { pruneDeadWorkers } from './heartbeat.ts';

export const RETENTION_BATCH = 500;

const PURGE_PAYLOADS_SQL = `
DELETE FROM mail.message_payloads
 WHERE message_id IN (
   SELECT p.message_id FROM mail.message_payloads p
    WHERE p.created_at < now() - $1::double precision * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM mail.deliveries d
                       WHERE d.message_id = p.message_id AND d.status IN ('queued', 'retrying', 'sending'))
    LIMIT $2)`;

const PURGE_ATTEMPTS_SQL = `
DELETE FROM mail.attempts
 WHERE id IN (SELECT id FROM mail.attempts
               WHERE finished_at < now() - $1::double precision * interval '1 millisecond'
               ORDER BY finished_at LIMIT $2)`;

// Oldest first through idempotency_reservations_created_at_idx.
const PURGE_RESERVATIONS_SQL = `
DELETE FROM mail.idempotency_reservations
 WHERE (source, idempotency_key) IN (
   SELECT source, idempotency_key FROM mail.idempotency_reservations
    WHERE created_at < now() - $1::double precision * interval '1 millisecond'
    ORDER BY created_at LIMIT $2)`;

export interface Purged {
  payloads: number;
  attempts: number;
  reservations: number;
  workers: number;
}

/** One batch of each (dead engines' worker rows all at once); returns how many rows went, so the
 *  caller repeats while batches are full. */
export async function purgeExpired(
  db: Queryable,
  ages: { retentionAgeMs: number; idempotencyWindowMs: number },
  batch = RETENTION_BATCH,
): Promise<Purged> {
  const payloads = await db.query(PURGE_PAYLOADS_SQL, [ages.retentionAgeMs, batch]);
  const attempts = await db.query(PURGE_ATTEMPTS_SQL, [ages.retentionAgeMs, batch]);
  const reservations = await db.query(PURGE_RESERVATIONS_SQL, [ages.idempotencyWindowMs, batch]);
  const workers = await pruneDeadWorkers(db);
  return {
    payloads: payloads.rowCount ?? 0,
    attempts: attempts.rowCount ?? 0,
    reservations: reservations.rowCount ?? 0,
    workers,
  };
}
