// graphile-worker as the core bench's yardstick: its perfTest (perfTest/init.js enqueues N no-op
// `log_if_999` jobs with graphile_worker.add_job; perfTest/run.js times `--once` workers draining
// them), written against its public API and run in this process as the engine is, with the same
// concurrency and the options of its perfTest preset (perfTest/graphile.config.js), against a
// database of its own on the same PostgreSQL server.
// The package is installed by the bench into a cache directory rather than as a project dependency:
// nothing in Postern uses it, and its pinned copy (with its own pg) stays out of package-lock.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { FirstJobClock, type Timed } from './figures.ts';

/** The version the project's performance figures were first taken against. */
export const GRAPHILE_WORKER_VERSION = process.env.BENCH_GRAPHILE_WORKER_VERSION ?? '0.17.3';

/** The part of graphile-worker's public API the bench uses (its own types are not installed for tsc). */
interface GraphileWorker {
  runMigrations(options: { connectionString: string; logger: unknown }): Promise<void>;
  runOnce(options: {
    preset: { worker: Record<string, unknown> };
    taskList: Record<string, (payload: unknown) => Promise<void>>;
    noHandleSignals: boolean;
    logger: unknown;
  }): Promise<void>;
  Logger: new (factory: () => () => void) => unknown;
}

function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(base, 'postern', 'bench', `graphile-worker-${GRAPHILE_WORKER_VERSION}`);
}

/** graphile-worker at the pinned version, installed with npm into the cache on first use. */
export function loadGraphileWorker(): GraphileWorker {
  const dir = cacheDir();
  const manifest = path.join(dir, 'node_modules', 'graphile-worker', 'package.json');
  const installed = existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version === GRAPHILE_WORKER_VERSION;
  if (!installed) {
    mkdirSync(dir, { recursive: true });
    console.log(`# installing graphile-worker@${GRAPHILE_WORKER_VERSION} into ${dir}`);
    execFileSync('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--save-exact', `graphile-worker@${GRAPHILE_WORKER_VERSION}`], { stdio: 'inherit' });
  }
  return createRequire(path.join(dir, 'package.json'))('graphile-worker') as GraphileWorker;
}

/** graphile-worker's perfTest against its own database `dsn`: enqueue `count` jobs, time a worker
 *  with `concurrency` slots draining them. */
export async function runGraphilePerfTest(worker: GraphileWorker, dsn: string, count: number, concurrency: number): Promise<Timed> {
  const logger = new worker.Logger(() => () => {});
  await worker.runMigrations({ connectionString: dsn, logger });
  const pool = new pg.Pool({ connectionString: dsn, max: 2 });
  try {
    await pool.query('VACUUM ANALYZE graphile_worker._private_jobs');
    await pool.query("SELECT graphile_worker.add_job('log_if_999', json_build_object('id', i)) FROM generate_series(1, $1::int) AS i", [count]);
    let done = 0;
    const clock = new FirstJobClock();
    await worker.runOnce({
      preset: {
        worker: {
          connectionString: dsn,
          concurrentJobs: concurrency,
          maxPoolSize: concurrency + 1,
          localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
      // perfTest/tasks/log_if_999.js: a no-op but for one console line, left out here.
      taskList: {
        log_if_999: async () => {
          clock.mark();
          done += 1;
        },
      },
      noHandleSignals: true,
      logger,
    });
    const timed = clock.stop(count);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
    if (done !== count || rows[0]?.n !== 0) throw new Error(`graphile-worker ran ${done} of ${count} jobs and left ${rows[0]?.n} in the queue`);
    return timed;
  } finally {
    await pool.end();
  }
}
