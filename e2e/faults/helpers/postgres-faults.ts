// Faults of PostgreSQL itself, on a dedicated container (e2e/harness/dedicated-postgres.ts): stopped
// (connections refused and cut), paused (docker pause: connections stay open and nothing answers,
// a hang rather than a refusal) or read-only (it answers everything and refuses every write). Each fault lasts its stated time on purpose: the outage is the
// experiment, not a wait for a state.
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { type DedicatedPostgres, pauseContainer, startDedicatedPostgres, unpauseContainer } from '../../harness/index.ts';
import { type FaultRedis, startFaultRedis } from './fault-redis.ts';


/** What a file whose fault is PostgreSQL runs its cells on: the server it stops or pauses, a pool on it for the account, and a Redis of its own. */
export interface PostgresFaultBench {
  postgres: DedicatedPostgres;
  /** Errors while the server is away are the experiment, not the test's: they are ignored. */
  pool: pg.Pool;
  redis: FaultRedis;
  close(): Promise<void>;
}

export async function startPostgresFaultBench(): Promise<PostgresFaultBench> {
  const [postgres, redis] = await Promise.all([startDedicatedPostgres(), startFaultRedis()]);
  const pool = new pg.Pool({ connectionString: postgres.dsn, max: 3 });
  pool.on('error', () => {});
  return {
    postgres,
    pool,
    redis,
    async close() {
      await pool.end();
      await redis.close();
      await postgres.close();
    },
  };
}

/** Stops PostgreSQL for `ms`, starts it and waits until it answers; resolves with the time it answered again. */
export async function stopPostgresFor(postgres: DedicatedPostgres, ms: number): Promise<number> {
  await postgres.stop();
  await delay(ms);
  await postgres.start();
  return Date.now();
}

/** Freezes PostgreSQL (docker pause); resolves, once it is frozen, with the function that thaws it. */
export async function pausePostgres(postgres: DedicatedPostgres): Promise<() => Promise<number>> {
  await pauseContainer(postgres.container.getId());
  return async () => {
    await unpauseContainer(postgres.container.getId());
    return Date.now();
  };
}

/**
 * Makes PostgreSQL take no writes for `ms`: `default_transaction_read_only` on for the whole server
 * (ALTER SYSTEM, then a reload, which every open session takes up), as an operator freezing writes
 * for maintenance does, and as every write meets on a standby: each INSERT or UPDATE is refused with
 * SQLSTATE 25006 while reads go on. Resolves with the time writes were taken again.
 */
export async function readOnlyPostgresFor(pool: pg.Pool, ms: number): Promise<number> {
  const admin = await pool.connect();
  try {
    // The admin's own session keeps writing, whatever the server's default becomes.
    await admin.query('SET default_transaction_read_only = off');
    await admin.query('ALTER SYSTEM SET default_transaction_read_only = on');
    await admin.query('SELECT pg_reload_conf()');
    await delay(ms);
    await admin.query('ALTER SYSTEM RESET default_transaction_read_only');
    await admin.query('SELECT pg_reload_conf()');
    return Date.now();
  } finally {
    admin.release();
  }
}
