// How the accept statement ended, as far as the edge can KNOW it, so that a reply never causes a
// duplicate. A client-side timeout is not "nothing stored": with PostgreSQL paused, the statement
// sits in the server's socket buffer, and if the edge answered 451 it would commit when the server
// resumes, the sender would retry and the message be delivered twice. So:
//   - an ERROR reported by the server for the statement means its implicit transaction rolled back
//     (statement_timeout, a cancel we asked for: 57014, a constraint ...): known, nothing stored;
//   - anything else (the connection broke, a FATAL from a server going down) leaves the outcome
//     unknown until the server answers again: then the backend that ran the statement must be gone
//     and the message id (generated here, before the statement) is looked up.
import type { Queryable } from '@postern/shared';

/** A pg-protocol ErrorResponse of severity ERROR: the statement failed and its transaction rolled back. */
export function isStatementRolledBack(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { severity, code } = error as { severity?: unknown; code?: unknown };
  // FATAL / PANIC end the backend itself; whether a commit happened just before is not said.
  // The severity field is localised (lc_messages): a server speaking another language makes every
  // error take the settling path, which is slower but still right.
  return severity === 'ERROR' && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

const CANCEL_SQL = 'SELECT pg_cancel_backend($1) AS cancelled';

const SETTLED_SQL = `
SELECT EXISTS (SELECT 1 FROM mail.messages WHERE id = $1) AS stored,
       EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $2) AS running`;

/** Asks the server to cancel what the backend `pid` runs; true when the signal was sent. */
export async function cancelBackend(control: Queryable, pid: number): Promise<boolean> {
  const result = await control.query<{ cancelled: boolean }>(CANCEL_SQL, [pid]);
  return result.rows[0]?.cancelled === true;
}

export interface SettleOptions {
  retryMs: number;
  /** Stops the wait (the edge is stopping); the outcome then stays unknown (null). */
  signal?: AbortSignal;
}

/**
 * After the connection that ran the accept broke: waits until the server answers, its backend is
 * gone (so nothing can still commit), and says whether the message was stored. Never guesses: while
 * the server does not answer it keeps asking; null only when told to stop.
 */
export async function settledOutcome(control: Queryable, messageId: string, pid: number | null, options: SettleOptions): Promise<boolean | null> {
  for (;;) {
    if (options.signal?.aborted) return null;
    try {
      const { rows } = await control.query<{ stored: boolean; running: boolean }>(SETTLED_SQL, [messageId, pid ?? 0]);
      const row = rows[0];
      if (row && (row.stored || !row.running)) return row.stored;
      // The old backend still runs (it has not noticed its client is gone): ask it to stop.
      if (pid !== null) await cancelBackend(control, pid).catch(() => false);
    } catch {
      // The server does not answer (yet): the outcome is still unknown, ask again.
    }
    await new Promise((resolve) => setTimeout(resolve, options.retryMs));
  }
}
