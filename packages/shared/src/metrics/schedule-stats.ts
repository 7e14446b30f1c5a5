// The figures behind mail_attempt_schedule_depth and mail_attempt_schedule_oldest_age_ms (dead-runner:
// "we don't actually monitor the size of the out queue"). Read from the database (in the background:
// schedule-sampler.ts), so every process that exports them reports the one shared queue, and a dead
// engine cannot report a stale "all fine".
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { fillMark } from '../db/sql-marks.ts';

export interface ScheduleStats {
  /** Deliveries waiting or being attempted: queued, retrying, sending. */
  depth: number;
  /** Age of the oldest of them since it was created (near the retry ladder in a healthy system). */
  oldestAgeMs: number;
  /** Due now and not yet claimed. */
  due: number;
  /** How long the longest-due unclaimed delivery has been due: near 0 unless engines are stuck. */
  dueLagMs: number;
}

/** When the longest-due unclaimed delivery became due (NULL: none due). The due index leads with the
 *  priority (claims take urgent rows first), so min(next_attempt_at) over the due rows would scan
 *  them all (about 100 ms at a million); the oldest of each priority (the CHECK allows 0 and 1) is
 *  one index lookup each. Read by the gauges here and by the API's queueStats. */
export const OLDEST_DUE_AT = `LEAST(
  (SELECT next_attempt_at FROM mail.deliveries
    WHERE status IN ('queued', 'retrying') AND priority = 0 AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1),
  (SELECT next_attempt_at FROM mail.deliveries
    WHERE status IN ('queued', 'retrying') AND priority = 1 AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1))`;

const STATS_SQL = fillMark(
  `
SELECT
  (SELECT count(*) FROM mail.deliveries WHERE status IN ('queued', 'retrying', 'sending'))::bigint AS depth,
  (SELECT COALESCE(extract(epoch FROM now() - min(created_at)) * 1000, 0)
     FROM mail.deliveries WHERE status IN ('queued', 'retrying', 'sending'))::float8 AS oldest_age_ms,
  (SELECT count(*) FROM mail.deliveries WHERE status IN ('queued', 'retrying') AND next_attempt_at <= now())::bigint AS due,
  COALESCE(extract(epoch FROM now() - /*OLDEST_DUE_AT*/) * 1000, 0)::float8 AS due_lag_ms`,
  'OLDEST_DUE_AT',
  OLDEST_DUE_AT,
);

export async function readScheduleStats(db: Queryable): Promise<ScheduleStats> {
  const { rows } = await db.query<{ depth: string; oldest_age_ms: number; due: string; due_lag_ms: number }>(STATS_SQL);
  const row = rows[0];
  return {
    depth: Number(row?.depth ?? 0),
    oldestAgeMs: Math.max(0, Number(row?.oldest_age_ms ?? 0)),
    due: Number(row?.due ?? 0),
    dueLagMs: Math.max(0, Number(row?.due_lag_ms ?? 0)),
  };
}
