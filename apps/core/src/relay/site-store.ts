// The limits every engine shares per destination site, kept in PostgreSQL (docs/core.md,
// "Shaping"; tables in migrations/1766100000000_site-shaping.sql) — no coordination protocol of
// Postern's own, only row locks and leases:
// - connection slots: rows 0..N-1 per site; a connection may be opened only on a slot claimed with
//   FOR UPDATE SKIP LOCKED, whose lease its engine renews while the connection lives. A crashed
//   engine renews nothing: its slots are free again when their leases run out. A free slot's
//   expires_at is when it was last given up (released, or its lease ran out) or made: retention removes
//   the rows of a site nobody has connected to for MAIL_RETENTION_AGE (keepalive/retention.ts),
//   and a claim that finds rows missing makes them again.
// - the message rate: a token bucket row, refilled by elapsed time in the statement that takes a
//   token, so concurrent engines serialise on the row and never take more than the rate allows.
// - backoff: a row saying no engine connects to the site before `until`; it is read in the same
//   statement that claims a slot. Once `until` has passed the row stays until a session is set up
//   (clearBackoff): meanwhile the site is probed, one connection (slot 0) across every engine, so a
//   site whose hosts still hang holds one attempt worker, not one per slot.
//   The row's `since` is the outage's first failure (the insert); the failures that lengthen it
//   leave it alone, so mail_sites_backed_off_longest_ms (site-backoff-gauges.ts) tells how long.
// Time is PostgreSQL's now(), so engines with skewed clocks still agree.
import { type Queryable, storableText } from '@postern/shared';

// A slot row made now is free since now. (Made with the column's default, '-infinity', it looked
// idle for ever: a retention pass running at the same moment deleted the rows just made, and the
// claim, skipping the rows being deleted, answered "full" and deferred the delivery for nothing.)
const ENSURE_SLOTS_SQL = `
INSERT INTO mail.site_slots (site, slot, expires_at)
SELECT $1, s, now() FROM generate_series(0, $2::int - 1) AS s
ON CONFLICT (site, slot) DO NOTHING`;

/** A free slot below the limit, unless the site is backed off; all answers in one round trip. A
 *  site whose backoff is over but not cleared (no session set up since) is probed: slot 0 only,
 *  one connection across every engine until one sets up a session (clearBackoff) or fails again. */
const CLAIM_SLOT_SQL = `
WITH failing AS (
  SELECT until FROM mail.site_backoffs WHERE site = $1),
backoff AS (
  SELECT until FROM failing WHERE until > now()),
free AS (
  SELECT slot FROM mail.site_slots
   WHERE site = $1 AND slot < (CASE WHEN EXISTS (SELECT 1 FROM failing) THEN 1 ELSE $2 END)
     AND expires_at <= now() AND NOT EXISTS (SELECT 1 FROM backoff)
   ORDER BY slot
   LIMIT 1
   FOR UPDATE SKIP LOCKED),
taken AS (
  UPDATE mail.site_slots s
     SET holder = $3, expires_at = now() + $4::double precision * interval '1 millisecond'
    FROM free
   WHERE s.site = $1 AND s.slot = free.slot
  RETURNING s.slot)
SELECT (SELECT slot FROM taken) AS slot,
       (SELECT EXTRACT(EPOCH FROM until - now()) * 1000 FROM backoff)::double precision AS backoff_ms,
       EXISTS (SELECT 1 FROM failing) AS probing,
       (SELECT count(*) FROM mail.site_slots WHERE site = $1 AND slot < $2)::int AS slots`;

const RELEASE_SLOT_SQL = `
UPDATE mail.site_slots SET holder = NULL, expires_at = now()
 WHERE site = $1 AND slot = $2 AND holder = $3`;

/** Renews the live leases of these holders; returns the ones renewed (the others were lost). */
const RENEW_SLOTS_SQL = `
UPDATE mail.site_slots SET expires_at = now() + $2::double precision * interval '1 millisecond'
 WHERE holder = ANY($1::text[]) AND expires_at > now()
RETURNING holder`;

/** One token from the site's bucket (capacity $2, refill $3 per second), or no row. */
const TAKE_TOKEN_SQL = `
INSERT INTO mail.site_buckets AS b (site, tokens, refilled_at) VALUES ($1, $2::double precision - 1, now())
ON CONFLICT (site) DO UPDATE
   SET tokens = LEAST($2::double precision, b.tokens + EXTRACT(EPOCH FROM now() - b.refilled_at) * $3::double precision) - 1,
       refilled_at = now()
 WHERE LEAST($2::double precision, b.tokens + EXTRACT(EPOCH FROM now() - b.refilled_at) * $3::double precision) >= 1
RETURNING tokens`;

/** A failure while not backed off starts a backoff, doubling per failure in a row (at most 32x);
 *  failures of connections opened before it began (the same outage) do not lengthen it. */
const BACK_OFF_SQL = `
INSERT INTO mail.site_backoffs AS b (site, until, failures, reason)
VALUES ($1, now() + $2::double precision * interval '1 millisecond', 1, $3)
ON CONFLICT (site) DO UPDATE
   SET failures = CASE WHEN b.until <= now() THEN b.failures + 1 ELSE b.failures END,
       until = CASE WHEN b.until <= now()
                    THEN now() + $2::double precision * power(2, LEAST(b.failures, 5)) * interval '1 millisecond'
                    ELSE b.until END,
       reason = CASE WHEN b.until <= now() THEN EXCLUDED.reason ELSE b.reason END,
       updated_at = now()
RETURNING EXTRACT(EPOCH FROM until - now()) * 1000 AS backoff_ms, failures`;

const CLEAR_BACKOFF_SQL = 'DELETE FROM mail.site_backoffs WHERE site = $1';

/** full: no slot below the limit is free; `probing`: the site's backoff is over but no session was
 *  set up since, and its one probe connection is taken. */
export type SlotClaim = { kind: 'slot'; slot: number } | { kind: 'backoff'; retryInMs: number } | { kind: 'full'; probing: boolean };

export interface SiteStore {
  claimSlot(site: string, maxConnections: number, holder: string, leaseMs: number): Promise<SlotClaim>;
  releaseSlot(site: string, slot: number, holder: string): Promise<void>;
  /** The holders whose leases were renewed. */
  renewSlots(holders: readonly string[], leaseMs: number): Promise<Set<string>>;
  takeToken(site: string, ratePerSecond: number): Promise<boolean>;
  backOff(site: string, baseMs: number, reason: string): Promise<{ retryInMs: number; failures: number }>;
  clearBackoff(site: string): Promise<void>;
}

/** Sites whose slot rows an engine remembers having made; past it, it forgets them all and makes
 *  sure again (an INSERT that finds the rows there), so an engine that mails many sites stays small. */
export const MAX_ENSURED_SITES = 10_000;

export function createSiteStore(db: Queryable): SiteStore {
  /** Sites whose slot rows this engine has made sure of, with the count made. */
  const ensured = new Map<string, number>();
  return {
    async claimSlot(site, maxConnections, holder, leaseMs) {
      // At most twice: once more when the slot rows this engine made were purged since (a site
      // idle for the retention age) and none was free, after making them again.
      for (let attempt = 1; ; attempt += 1) {
        if ((ensured.get(site) ?? 0) < maxConnections) {
          await db.query(ENSURE_SLOTS_SQL, [site, maxConnections]);
          if (ensured.size >= MAX_ENSURED_SITES) ensured.clear();
          ensured.set(site, maxConnections);
        }
        const { rows } = await db.query<{ slot: number | null; backoff_ms: number | null; probing: boolean; slots: number }>(CLAIM_SLOT_SQL, [site, maxConnections, holder, leaseMs]);
        const row = rows[0];
        if (row?.backoff_ms != null) return { kind: 'backoff', retryInMs: Math.max(0, Number(row.backoff_ms)) };
        if (row?.slot != null) return { kind: 'slot', slot: row.slot };
        if ((row?.slots ?? 0) >= maxConnections || attempt === 2) return { kind: 'full', probing: row?.probing === true };
        ensured.delete(site);
      }
    },
    async releaseSlot(site, slot, holder) {
      await db.query(RELEASE_SLOT_SQL, [site, slot, holder]);
    },
    async renewSlots(holders, leaseMs) {
      if (holders.length === 0) return new Set();
      const { rows } = await db.query<{ holder: string }>(RENEW_SLOTS_SQL, [holders, leaseMs]);
      return new Set(rows.map((row) => row.holder));
    },
    async takeToken(site, ratePerSecond) {
      // The bucket holds one second's worth, at least one token: a burst never exceeds that.
      const { rows } = await db.query(TAKE_TOKEN_SQL, [site, Math.max(1, ratePerSecond), ratePerSecond]);
      return rows.length > 0;
    },
    async backOff(site, baseMs, reason) {
      const { rows } = await db.query<{ backoff_ms: number; failures: number }>(BACK_OFF_SQL, [site, baseMs, storableText(reason, { maxChars: 500 })]);
      return { retryInMs: Math.max(0, Number(rows[0]?.backoff_ms ?? baseMs)), failures: rows[0]?.failures ?? 1 };
    },
    async clearBackoff(site) {
      await db.query(CLEAR_BACKOFF_SQL, [site]);
    },
  };
}
