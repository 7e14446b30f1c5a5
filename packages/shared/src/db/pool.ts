// The PostgreSQL pool every process uses. dead-runner: the delivery runner died because the database
// vanished during maintenance and an unhandled error took the process down. Here an idle client's
// error is logged and the client discarded; the pool reconnects on the next checkout.
import pg from 'pg';
import type { Logger } from 'pino';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  dsn: string;
  applicationName: string;
  max?: number;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
  /**
   * Also give up on a query client-side (default true). The edge's accept pool turns it off: a
   * client that gives up does not know whether the statement still commits (docs/mta.md).
   */
  clientQueryTimeout?: boolean;
  logger: Logger;
}

export function createPool(options: PoolOptions): pg.Pool {
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000;
  const pool = new pg.Pool({
    connectionString: options.dsn,
    application_name: options.applicationName,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    // Server-side limit on each statement, and a client-side limit for when the server is gone
    // and cannot enforce anything (a half-open TCP connection answers nothing, ever).
    statement_timeout: statementTimeoutMs,
    ...(options.clientQueryTimeout === false ? {} : { query_timeout: statementTimeoutMs + 1_000 }),
    // PostgreSQL takes at most 2^31-1 ms here and refuses the connection past it.
    idle_in_transaction_session_timeout: Math.min(Math.max(statementTimeoutMs * 2, 30_000), 2_147_483_647),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // An idle_session_timeout set on the role or the database (operators set it to reap forgotten
    // sessions) must not reach ours: the engine's LISTEN session is idle by design, and each kill
    // restarted the scheduler with a growing backoff (no claims meanwhile, /readyz 503, the
    // restart alert). Idle pooled connections are closed by the pool itself (idleTimeoutMillis).
    // A session setting, run before the new connection is handed out (pg-pool awaits onConnect),
    // so a DSN's own `options` still apply; a failure is logged and the connection used as it is.
    onConnect: async (client) => {
      try {
        await client.query('SET idle_session_timeout = 0');
      } catch (error) {
        options.logger.warn({ err: error }, 'could not turn idle_session_timeout off for a PostgreSQL session');
      }
    },
  });
  pool.on('error', (error) => {
    options.logger.warn({ err: error }, 'idle PostgreSQL client failed; it was discarded');
  });
  pool.on('connect', (client) => {
    // A checked-out client can also emit 'error' (connection reset mid-use); without a listener
    // Node would throw it as an uncaught exception. The query itself rejects; this only logs.
    client.on('error', (error) => {
      options.logger.warn({ err: error }, 'PostgreSQL client connection failed');
    });
  });
  return pool;
}

/** Run `work` in one transaction; roll back on any error and rethrow it. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch {
      // The connection itself is gone; do not hand it back to the pool.
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/** A cheap round trip for readiness checks. */
export async function pingDatabase(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}
