// The producer of the latency run: queues deliveries at a fixed rate (open loop: the i-th is due
// i/rate seconds after the start, whatever the engine does) and notes when each one's INSERT
// committed — the moment its result came back, process.hrtime.bigint() — for the bench to set
// against the moment the engine handed it to the relay. It runs in a worker thread so that its
// own event loop never delays the engine's, and on the same monotonic clock.
// Rows due at the same time share one statement (at 1 ms timer resolution that is a few rows at
// most); up to MAX_IN_FLIGHT statements commit concurrently, so one slow WAL flush does not hold
// back the pace.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';
import { enqueueDeliveries } from './deliveries.ts';

const MAX_IN_FLIGHT = 8;
const MAX_PER_STATEMENT = 200;

export interface PacedEnqueueOptions {
  dsn: string;
  /** Deliveries per second. */
  rate: number;
  count: number;
  label: string;
}

export interface PacedEnqueueResult {
  /** Delivery id -> process.hrtime.bigint() when its INSERT had committed. */
  committedAt: Map<string, bigint>;
  seconds: number;
  statements: number;
}

async function produce(options: PacedEnqueueOptions): Promise<{ ids: string[]; times: bigint[]; seconds: number; statements: number }> {
  const pool = new pg.Pool({ connectionString: options.dsn, max: MAX_IN_FLIGHT });
  const ids: string[] = [];
  const times: bigint[] = [];
  const inFlight = new Set<Promise<void>>();
  let issued = 0;
  let statements = 0;
  const t0 = performance.now();
  try {
    while (issued < options.count) {
      const due = Math.min(options.count, Math.floor(((performance.now() - t0) * options.rate) / 1000)) - issued;
      if (due > 0 && inFlight.size < MAX_IN_FLIGHT) {
        const count = Math.min(due, MAX_PER_STATEMENT);
        issued += count;
        statements += 1;
        const insert: Promise<void> = enqueueDeliveries(pool, count, options.label).then((inserted) => {
          const at = process.hrtime.bigint();
          for (const id of inserted) {
            ids.push(id);
            times.push(at);
          }
          inFlight.delete(insert);
        });
        inFlight.add(insert);
        continue;
      }
      if (due > 0) await Promise.race(inFlight);
      else await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 + ((issued + 1) * 1000) / options.rate - performance.now())));
    }
    await Promise.all(inFlight);
    return { ids, times, seconds: (performance.now() - t0) / 1000, statements };
  } finally {
    await pool.end();
  }
}

/** Runs the producer in a worker thread; resolves when every delivery has been committed. */
export function pacedEnqueue(options: PacedEnqueueOptions): Promise<PacedEnqueueResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: options });
    worker.once('message', (result: Awaited<ReturnType<typeof produce>>) => {
      const committedAt = new Map<string, bigint>();
      result.ids.forEach((id, index) => {
        committedAt.set(id, result.times[index] as bigint);
      });
      resolve({ committedAt, seconds: result.seconds, statements: result.statements });
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`paced enqueue worker exited with ${code}`));
    });
  });
}

if (!isMainThread && parentPort) {
  parentPort.postMessage(await produce(workerData as PacedEnqueueOptions));
}
