// Retention: payloads and attempts older than MAIL_RETENTION_AGE are purged in small batches (a
// single huge DELETE would hold locks and bloat WAL while the queue is working). A payload is kept
// while any delivery of its message still waits for an attempt, however old. Idempotency
// reservations older than MAIL_IDEMPOTENCY_WINDOW go the same way: past the window a producer's
// retry of the same key is a new delivery, and the table does not grow forever. Heartbeat rows of
// engines silent for a day leave mail.workers (pruneDeadWorkers), so the table lists live engines.
// The shaping state of destination sites (relay/site-store.ts) that nobody has connected to or
// sent to for MAIL_RETENTION_AGE goes too — a site's slot rows only when every slot has been free
// that long (the DELETE checks each row again, so a slot claimed meanwhile stays, and the claim
// makes missing rows again), a full token bucket, a backoff long over — so the tables hold the sites
// in use, not every site ever mailed. Cached MTA-STS policies that expired MAIL_RETENTION_AGE ago
// go as well: no engine has fetched a newer one since (nobody mailed the domain, or its policy host
// failed every fetch for that long), and the RFC gives a policy no force past its max_age; until
// then mailauth's lax fallback (an expired enforce policy applied while its fetch fails) has it.
// Quarantined commands (mail.malformed_commands, each with its raw entry) older than the age go too:
// the table grew without bound, a producer sending garbage for months filling it, and what an
// operator needs of one (its code, its detail, the producer) is read within days; the counter
// mail_stream_commands_malformed_total keeps the history.
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

// A batch of idle sites: every one of its slots free since before the age (any slot of the site
// names it: after a purge that kept a slot claimed meanwhile, slot 0 may be the one missing).
const PURGE_SITE_SLOTS_SQL = `
WITH idle AS (
  SELECT DISTINCT s.site FROM mail.site_slots s
   WHERE s.expires_at < now() - $1::double precision * interval '1 millisecond'
     AND NOT EXISTS (SELECT 1 FROM mail.site_slots o
                      WHERE o.site = s.site AND o.expires_at >= now() - $1::double precision * interval '1 millisecond')
   LIMIT $2),
gone AS (
  DELETE FROM mail.site_slots s USING idle
   WHERE s.site = idle.site AND s.expires_at < now() - $1::double precision * interval '1 millisecond'
  RETURNING s.site)
SELECT count(DISTINCT site)::int AS sites FROM gone`;

// Not refilled for the age: full, as a bucket made anew would be.
const PURGE_SITE_BUCKETS_SQL = `
DELETE FROM mail.site_buckets
 WHERE site IN (SELECT site FROM mail.site_buckets
                 WHERE refilled_at < now() - $1::double precision * interval '1 millisecond' LIMIT $2)
   AND refilled_at < now() - $1::double precision * interval '1 millisecond'`;

const PURGE_SITE_BACKOFFS_SQL = `
DELETE FROM mail.site_backoffs
 WHERE site IN (SELECT site FROM mail.site_backoffs
                 WHERE until < now() - $1::double precision * interval '1 millisecond' LIMIT $2)
   AND until < now() - $1::double precision * interval '1 millisecond'`;

// The primary key's order is as good as any: the WHERE is checked again on the row deleted.
const PURGE_MTA_STS_POLICIES_SQL = `
DELETE FROM mail.mta_sts_policies
 WHERE domain IN (SELECT domain FROM mail.mta_sts_policies
                   WHERE expires_at < now() - $1::double precision * interval '1 millisecond' LIMIT $2)
   AND expires_at < now() - $1::double precision * interval '1 millisecond'`;

// Oldest first through malformed_commands_received_at_idx.
const PURGE_MALFORMED_COMMANDS_SQL = `
DELETE FROM mail.malformed_commands
 WHERE id IN (SELECT id FROM mail.malformed_commands
               WHERE received_at < now() - $1::double precision * interval '1 millisecond'
               ORDER BY received_at LIMIT $2)`;

export interface Purged {
  payloads: number;
  attempts: number;
  reservations: number;
  workers: number;
  /** Destination sites whose connection slots went. */
  siteSlots: number;
  siteBuckets: number;
  siteBackoffs: number;
  /** Cached MTA-STS policies expired for MAIL_RETENTION_AGE. */
  mtaStsPolicies: number;
  /** Quarantined commands received MAIL_RETENTION_AGE ago. */
  malformedCommands: number;
}

/** The purges that go in batches of RETENTION_BATCH: another pass follows a full one. */
export const BATCHED_PURGES = ['payloads', 'attempts', 'reservations', 'siteSlots', 'siteBuckets', 'siteBackoffs', 'mtaStsPolicies', 'malformedCommands'] as const;

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
  const siteSlots = await db.query<{ sites: number }>(PURGE_SITE_SLOTS_SQL, [ages.retentionAgeMs, batch]);
  const siteBuckets = await db.query(PURGE_SITE_BUCKETS_SQL, [ages.retentionAgeMs, batch]);
  const siteBackoffs = await db.query(PURGE_SITE_BACKOFFS_SQL, [ages.retentionAgeMs, batch]);
  const mtaStsPolicies = await db.query(PURGE_MTA_STS_POLICIES_SQL, [ages.retentionAgeMs, batch]);
  const malformedCommands = await db.query(PURGE_MALFORMED_COMMANDS_SQL, [ages.retentionAgeMs, batch]);
  return {
    payloads: payloads.rowCount ?? 0,
    attempts: attempts.rowCount ?? 0,
    reservations: reservations.rowCount ?? 0,
    workers,
    siteSlots: siteSlots.rows[0]?.sites ?? 0,
    siteBuckets: siteBuckets.rowCount ?? 0,
    siteBackoffs: siteBackoffs.rowCount ?? 0,
    mtaStsPolicies: mtaStsPolicies.rowCount ?? 0,
    malformedCommands: malformedCommands.rowCount ?? 0,
  };
}
