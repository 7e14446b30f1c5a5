// How many sessions of this test's database wait on a lock now: tests that hold a lock wait for
// the code under test to be stuck on it before they go on (never a sleep).
import type { Queryable } from '@postern/shared';

const LOCK_WAITERS_SQL = `SELECT count(*)::int AS n FROM pg_stat_activity
  WHERE datname = current_database() AND wait_event_type = 'Lock' AND ($1::text IS NULL OR application_name = $1)`;

/** Sessions waiting on a lock, only those of `applicationName` when given ('postern-api', 'postern-core'). */
export async function lockWaiters(db: Queryable, applicationName: string | null = null): Promise<number> {
  return (await db.query<{ n: number }>(LOCK_WAITERS_SQL, [applicationName])).rows[0]?.n ?? 0;
}
