// The PostgreSQL readiness check, on a connection of its own. /readyz must say whether the process
// can reach its database, not how long its pool's queue is: on the pool, the check's `SELECT 1`
// waited behind whatever was queued there — an unauthenticated flood of API token lookups, a
// harvest of SMTP recipient lookups, a burst of delivery work — past the check's 2 s limit, /readyz
// answered 503, and a load balancer took out every instance at once: an outage made of load. One
// more connection per process (counted in docs/deploy.md, "Sizing"); a pool of one, so a broken
// connection is replaced on the next check, and concurrent checks take turns on it.
//
// A full disk: PostgreSQL still answers, reads go on and so does a write that fits in a page
// already there, but every one that needs room fails with 53100 (`could not extend file ...: No
// space left on device`): the edge could store no message, the engines record nearly nothing. The
// round trip alone said ready throughout (e2e/faults/postgres-disk-full). So the check also makes
// the server write: a sort of 5,000 rows with work_mem at its minimum spills a temporary file of
// about 70 kB into the database's temporary space (its data directory, unless temp_tablespaces names
// another), removed as the statement ends. On a full disk that write fails with 53100 and the check
// says the disk is full; once space is freed it passes again by itself.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ReadinessCheck } from '../http/readiness.ts';
import { isDiskFullDbError } from './db-errors.ts';
import { createPool, pingDatabase } from './pool.ts';

// One simple-query round trip; the SET stays on the probe's own connection, which runs nothing else.
const WRITES_TO_DISK_SQL = "SET work_mem = '64kB'; SELECT count(*) FROM (SELECT g FROM generate_series(1, 5000) AS g ORDER BY g DESC) AS spilled";

/** Throws, naming the full disk, when PostgreSQL cannot write a temporary file. */
export async function checkDiskRoom(pool: pg.Pool): Promise<void> {
  try {
    await pool.query(WRITES_TO_DISK_SQL);
  } catch (error) {
    if (!isDiskFullDbError(error)) throw error;
    throw new Error(
      `PostgreSQL's disk is full: ${(error as Error).message} (SQLSTATE 53100). It answers reads, but every write that needs room fails: ` +
        'free space on the file system of its data directory (docs/runbook.md, "PostgreSQL disk full")',
    );
  }
}

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
  return {
    async check() {
      await pingDatabase(pool);
      await checkDiskRoom(pool);
    },
    end: () => pool.end(),
  };
}
