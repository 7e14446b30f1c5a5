// The PostgreSQL readiness check, on a connection of its own. /readyz must say whether the process
// can reach its database, not how long its pool's queue is: on the pool, the check's `SELECT 1`
// waited behind whatever was queued there — an unauthenticated flood of API token lookups, a
// harvest of SMTP recipient lookups, a burst of delivery work — past the check's 2 s limit, /readyz
// answered 503, and a load balancer took out every instance at once: an outage made of load. One
// more connection per process (counted in docs/deploy.md, "Sizing"); a pool of one, so a broken
// connection is replaced on the next check, and concurrent checks take turns on it.
import type { Logger } from 'pino';
import type { ReadinessCheck } from '../http/readiness.ts';
import { createPool, pingDatabase } from './pool.ts';

export interface DatabaseReadinessProbe {
  check: ReadinessCheck;
  end(): Promise<void>;
}

export function openDatabaseReadinessProbe(options: {
  dsn: string;
  /** Its application_name: "postern-<process>-readiness", told apart from the pool's in pg_stat_activity. */
  applicationName: string;
  connectTimeoutMs: number;
  logger: Logger;
}): DatabaseReadinessProbe {
  const pool = createPool({
    dsn: options.dsn,
    applicationName: options.applicationName,
    max: 1,
    connectTimeoutMs: options.connectTimeoutMs,
    statementTimeoutMs: options.connectTimeoutMs,
    logger: options.logger,
  });
  return { check: () => pingDatabase(pool), end: () => pool.end() };
}
