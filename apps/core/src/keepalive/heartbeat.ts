// Every loop's heartbeat goes to mail.workers (one row per process and loop), so operators and other
// engines can see who is alive and who stalled (stalled-worker: "no alerts or monitoring detected that
// there was an issue"). The row carries the loop's own last beat, not the time of writing: a stuck
// loop shows a heartbeat_at that stops advancing even while this writer keeps running.
import os from 'node:os';
import type { Queryable } from '@postern/shared';
import type { LoopStatus } from './supervisor.ts';

const UPSERT_SQL = `
INSERT INTO mail.workers (worker_id, loop, app, hostname, pid, state, restarts, heartbeat_at, progress_at, last_error)
SELECT $1, u.loop, 'core', $2, $3, u.state, u.restarts, u.heartbeat_at, u.progress_at, u.last_error
  FROM unnest($4::text[], $5::text[], $6::int[], $7::timestamptz[], $8::timestamptz[], $9::text[])
       AS u(loop, state, restarts, heartbeat_at, progress_at, last_error)
ON CONFLICT (worker_id, loop) DO UPDATE
   SET state = EXCLUDED.state, restarts = EXCLUDED.restarts, heartbeat_at = EXCLUDED.heartbeat_at,
       progress_at = EXCLUDED.progress_at, last_error = EXCLUDED.last_error`;

export async function writeHeartbeats(db: Queryable, workerId: string, loops: readonly LoopStatus[]): Promise<void> {
  await db.query({
    name: 'postern_write_heartbeats',
    text: UPSERT_SQL,
    values: [
      workerId,
      os.hostname(),
      process.pid,
      loops.map((loop) => loop.name),
      loops.map((loop) => loop.state),
      loops.map((loop) => loop.restarts),
      loops.map((loop) => new Date(loop.heartbeatAt)),
      loops.map((loop) => (loop.progressAt === null ? null : new Date(loop.progressAt))),
      loops.map((loop) => loop.lastError),
    ],
  });
}

// An engine that died (SIGKILL, machine lost) never writes its rows again, and they would say
// `running` for ever; a day without a heartbeat is long past any stall the watchdog acts on.
const PRUNE_DEAD_WORKERS_SQL = `DELETE FROM mail.workers WHERE app = 'core' AND heartbeat_at < now() - interval '1 day'`;

/** Rows of engines that stopped long ago are noise in the table: the retention loop removes them. */
export async function pruneDeadWorkers(db: Queryable): Promise<number> {
  const result = await db.query({ name: 'postern_prune_dead_workers', text: PRUNE_DEAD_WORKERS_SQL });
  return result.rowCount ?? 0;
}
