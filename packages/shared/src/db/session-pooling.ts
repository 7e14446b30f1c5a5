// Postern needs a PostgreSQL session to stay on one server connection: its per-message statements
// are named, prepared once per session (the edge's lookup and accept, the engine's claim and
// outcomes, the intake's reservation), the engine LISTENs for due work, migrations hold a session
// advisory lock, and each session's timeouts are set once (pool.ts). A pooler that hands a client's
// transactions to whichever server connection is free (PgBouncer with pool_mode = transaction or
// statement) breaks all of it, and not loudly: measured through PgBouncer 1.18 in transaction mode,
// the edge stayed ready while a share of its recipient lookups failed with `prepared statement
// "postern_resolve_recipients" already exists` and were answered 451, more as load grew. So each
// process looks before it migrates or serves, and refuses to start with the reason.
//
// The test: client A reads its backend's pid; client B opens a transaction and reads its own; A
// reads again. On a direct connection, or through a pooler that keeps sessions, A and B never
// share a backend and A's pid never changes. A pooler that hands out server connections per
// transaction shows one or the other: B gets the backend A just released (PgBouncer reuses the
// last one freed first), or A, whose backend B now holds, gets another.
import pg from 'pg';

const BACKEND_PID_SQL = 'SELECT pg_backend_pid() AS pid';

/** What the test saw: the backend pids of A (before and after B's transaction) and of B. */
export interface BackendPids {
  first: number;
  other: number;
  again: number;
}

/** The problem when the pids show a pooler that does not keep sessions, or null. */
export function sessionPoolingProblem(pids: BackendPids): string | null {
  if (pids.other !== pids.first && pids.again === pids.first) return null;
  const seen =
    pids.other === pids.first
      ? `a second connection was given the first one's server backend (pid ${pids.first})`
      : `the first connection moved from server backend ${pids.first} to ${pids.again} between two transactions`;
  return (
    `PostgreSQL is reached through a pooler that does not keep sessions (${seen}): Postern prepares statements once ` +
    'per session, LISTENs for due work and migrates under a session lock, which such a pooler breaks. Use ' +
    'pool_mode = session (PgBouncer) or connect to PostgreSQL directly; docs/deploy.md, "A connection pooler in front of PostgreSQL"'
  );
}

async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>(BACKEND_PID_SQL);
  return rows[0]?.pid ?? -1;
}

/** Throws, with the reason, when `dsn` leads through a pooler that does not keep sessions. */
export async function assertSessionsKept(dsn: string): Promise<void> {
  const a = new pg.Client({ connectionString: dsn, application_name: 'postern-session-check' });
  const b = new pg.Client({ connectionString: dsn, application_name: 'postern-session-check' });
  a.on('error', () => {});
  b.on('error', () => {});
  try {
    await a.connect();
    const first = await backendPid(a);
    await b.connect();
    await b.query('BEGIN');
    const other = await backendPid(b);
    const again = await backendPid(a);
    await b.query('ROLLBACK');
    const problem = sessionPoolingProblem({ first, other, again });
    if (problem !== null) throw new Error(problem);
  } finally {
    await Promise.all([a.end().catch(() => {}), b.end().catch(() => {})]);
  }
}
