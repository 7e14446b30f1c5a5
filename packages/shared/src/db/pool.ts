// The PostgreSQL pool every process uses. dead-runner: the delivery runner died because the database
// vanished during maintenance and an unhandled error took the process down. Here an idle client's
// error is logged and the client discarded; the pool reconnects on the next checkout.
//
// Every connection is to the primary. A standby answers reads from its copy, as old as its
// replication lag: the edge's recipient lookups would refuse with 550 a recipient created since
// (stale-alias-table by another road: the edge has no cache so that it never answers from old data).
// node-postgres connects to the one host its DSN names and has no `target_session_attrs`; an
// endpoint that should name the primary can name a standby for a while (a failover's DNS, a proxy
// without a health check, an old primary rejoined as a replica). So each new connection asks
// `pg_is_in_recovery()` and a standby's is refused, with NOT_PRIMARY_CODE: the database away for
// now (db-errors.ts), waited out like an outage, never an answer from the standby.
//
// The session's timeouts are set by that same round trip (set_config), not sent as startup
// parameters: PgBouncer refuses a connection whose startup packet carries a parameter it does not
// track (`unsupported startup parameter: idle_in_transaction_session_timeout`), so no process could
// connect through it, and its `ignore_startup_parameters` would drop the timeouts without a word.
import pg from 'pg';
import type { Logger } from 'pino';
import { NOT_PRIMARY_CODE } from './db-errors.ts';
import { connectionSettings } from './tls-files.ts';

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

// One round trip per new connection: is it the primary, and this session's timeouts.
const NEW_SESSION_SQL = `SELECT pg_is_in_recovery() AS standby,
  set_config('statement_timeout', $1, false), set_config('idle_in_transaction_session_timeout', $2, false)`;

interface SessionTimeouts {
  statementTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

/** A new connection reached a standby, not the primary. */
export class NotPrimaryError extends Error {
  readonly code = NOT_PRIMARY_CODE;
}

/** Sets the session's timeouts; throws NotPrimaryError when `client`'s server is in recovery (a standby). */
async function startSession(client: pg.ClientBase, timeouts: SessionTimeouts): Promise<void> {
  const { rows } = await client.query<{ standby: boolean }>(NEW_SESSION_SQL, [
    `${timeouts.statementTimeoutMs}ms`,
    `${timeouts.idleInTransactionTimeoutMs}ms`,
  ]);
  if (rows[0]?.standby !== true) return;
  // The pool's clients are pg.Client, which knows where it connected.
  const { host, port } = client as pg.Client;
  throw new NotPrimaryError(
    `PostgreSQL at ${host}:${port} is a standby (pg_is_in_recovery() is true), not the primary: ` +
      'Postern reads and writes the primary only, so MAIL_POSTGRES_PRIMARY_DSN must name it (docs/deploy.md, "PostgreSQL high availability")',
  );
}

export function createPool(options: PoolOptions): pg.Pool {
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000;
  // The DSN parsed once, its TLS files read per connection without ever throwing (tls-files.ts).
  const connection = connectionSettings(options.dsn, options.logger);
  const pool = new pg.Pool({
    ...connection,
    // As with a connection string: the DSN's own application_name, if it has one, wins.
    application_name: connection.application_name ?? options.applicationName,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    // A client-side limit for when the server is gone and cannot enforce its statement_timeout
    // (set per session below): a half-open TCP connection answers nothing, ever.
    ...(options.clientQueryTimeout === false ? {} : { query_timeout: statementTimeoutMs + 1_000 }),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // An idle_session_timeout set on the role or the database (operators set it to reap forgotten
    // sessions) must not reach ours: the engine's LISTEN session is idle by design, and each kill
    // restarted the scheduler with a growing backoff (no claims meanwhile, /readyz 503, the
    // restart alert). Idle pooled connections are closed by the pool itself (idleTimeoutMillis).
    // A session setting, run before the new connection is handed out (pg-pool awaits onConnect),
    // so a DSN's own `options` still apply; a failure is logged and the connection used as it is.
    // Before it, the standby check and the timeouts (above): the server's limit on each statement,
    // and on a transaction left idle (PostgreSQL takes at most 2^31-1 ms there). The standby's
    // refusal is the connection's error, and pg-pool closes the connection and hands the error to
    // whoever asked for it.
    onConnect: async (client) => {
      await startSession(client, {
        statementTimeoutMs,
        idleInTransactionTimeoutMs: Math.min(Math.max(statementTimeoutMs * 2, 30_000), 2_147_483_647),
      });
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

const TAKES_WRITES_SQL = "SELECT current_setting('transaction_read_only') = 'off' AS writable";

/** The readiness check's round trip: the database answers, is the primary (the pool refuses a
 *  standby's connections) and takes writes, which a server, database or role with
 *  default_transaction_read_only on does not: the edge could store nothing, the engines record
 *  nothing (their writes wait it out, db-errors.ts), so the process is not ready, and says why. */
export async function pingDatabase(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ writable: boolean }>(TAKES_WRITES_SQL);
  if (rows[0]?.writable === false) {
    throw new Error('PostgreSQL takes no writes: transaction_read_only is on (default_transaction_read_only set on the server, the database or the role)');
  }
}
