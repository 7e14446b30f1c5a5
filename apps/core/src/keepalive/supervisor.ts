// Every background loop runs under a supervisor (dead-runner: the Mailman "out" runner crashed when the
// database vanished and nothing restarted it; 4k mails sat for two days). A loop that throws — the
// database or Redis is gone, a bug — is restarted after a capped exponential backoff, counted and
// logged; the process itself never exits because of it. A loop that stops heartbeating while it has
// work (stalled-worker: workers alive but stalled) is abandoned by the watchdog through restart() and a
// fresh instance started; whatever the stalled instance held is released by its lease expiring.
import { setTimeout as delay } from 'node:timers/promises';
import { childLogger, type Logger } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';

export type LoopStateName = 'starting' | 'running' | 'backoff' | 'stopped';

export interface LoopContext {
  /** Aborted when the engine stops: finish the unit under way, take no new one, return. */
  signal: AbortSignal;
  /** "I am alive and not stuck": called at least once per heartbeat interval, idle or not. */
  beat(): void;
  /** A unit of work was finished. */
  progress(): void;
  /** Holding work (a leased delivery): a stale heartbeat now means a stall. */
  setBusy(busy: boolean): void;
  /** Aborted when this instance is abandoned (watchdog restart, or a stop that gave up waiting):
   *  it must take no new work, and gives up at once what it held that others can use. */
  abandoned: AbortSignal;
}

export interface LoopStatus {
  name: string;
  state: LoopStateName;
  restarts: number;
  stalls: number;
  startedAt: number;
  heartbeatAt: number;
  progressAt: number | null;
  lastError: string | null;
  busy: boolean;
}

export interface SupervisedLoop {
  readonly name: string;
  readonly status: LoopStatus;
  /** Abandon the current instance (it may be hung) and start a fresh one after the backoff. */
  restart(reason: string): void;
  /** Ask the loop to finish; wait up to graceMs for it. Resolves true if it ended in time. */
  stop(graceMs: number): Promise<boolean>;
}

export interface SuperviseOptions {
  name: string;
  body: (context: LoopContext) => Promise<void>;
  logger: Logger;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A run this long resets the backoff: the next failure restarts quickly again. */
  healthyAfterMs?: number;
  /** Where each restart is reported ('loop:restart'; metrics count them). */
  events?: EngineEvents;
}

function describe(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 500);
}

export function superviseLoop(options: SuperviseOptions): SupervisedLoop {
  const log = childLogger(options.logger, { loop: options.name });
  const backoffBaseMs = options.backoffBaseMs ?? 250;
  const backoffMaxMs = options.backoffMaxMs ?? 30_000;
  const healthyAfterMs = options.healthyAfterMs ?? 60_000;
  const now = Date.now();
  const status: LoopStatus = {
    name: options.name,
    state: 'starting',
    restarts: 0,
    stalls: 0,
    startedAt: now,
    heartbeatAt: now,
    progressAt: null,
    lastError: null,
    busy: false,
  };
  const stopController = new AbortController();
  let abandon: ((reason: Error) => void) | null = null;
  let instance = 0;

  const finished = (async () => {
    let failures = 0;
    while (!stopController.signal.aborted) {
      instance += 1;
      const mine = instance;
      const current = () => mine === instance;
      const abandonment = new AbortController();
      const context: LoopContext = {
        signal: stopController.signal,
        beat: () => {
          if (current()) status.heartbeatAt = Date.now();
        },
        progress: () => {
          if (current()) status.progressAt = Date.now();
        },
        setBusy: (busy) => {
          if (current()) status.busy = busy;
        },
        abandoned: abandonment.signal,
      };
      const abandoned = new Promise<never>((_, reject) => {
        abandon = (reason) => {
          reject(reason);
          abandonment.abort(reason);
        };
      });
      status.state = 'running';
      status.heartbeatAt = Date.now();
      status.busy = false;
      const startedAt = Date.now();
      let error: unknown;
      try {
        await Promise.race([options.body(context), abandoned]);
        if (stopController.signal.aborted) break;
        error = new Error('loop returned while the engine was running');
      } catch (caught) {
        if (stopController.signal.aborted) break;
        error = caught;
      } finally {
        abandon = null;
      }
      // Whatever the abandoned instance still does from now on no longer counts as this loop's life.
      instance += 1;
      if (Date.now() - startedAt >= healthyAfterMs) failures = 0;
      const waitMs = Math.min(backoffBaseMs * 2 ** failures, backoffMaxMs);
      failures += 1;
      status.restarts += 1;
      status.state = 'backoff';
      status.busy = false;
      status.lastError = describe(error);
      log.warn({ err: error, restartInMs: waitMs, restarts: status.restarts }, `loop ${options.name} failed; restarting`);
      options.events?.emit('loop:restart', { loop: options.name, error });
      try {
        await delay(waitMs, undefined, { signal: stopController.signal });
      } catch {
        break;
      }
    }
    status.state = 'stopped';
    status.busy = false;
  })();

  return {
    name: options.name,
    status,
    restart(reason) {
      status.stalls += 1;
      abandon?.(new Error(reason));
    },
    async stop(graceMs) {
      stopController.abort();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      });
      const ended = await Promise.race([finished.then(() => true as const), timedOut]);
      clearTimeout(timer);
      if (!ended) {
        abandon?.(new Error('engine stopping: loop did not finish in time'));
        status.state = 'stopped';
      }
      return ended;
    },
  };
}

/** Sleep until woken, the timeout passes or the signal aborts, whichever is first. A wake that
 *  comes while nobody waits (the scheduler is in the middle of a claim) is kept for the next
 *  wait, which then returns at once: a due notification that arrives during a claim may be for a
 *  row that claim could not see, and dropping it left that row to the next poll (a second). */
export function createWaker(): { wait(timeoutMs: number, signal: AbortSignal): Promise<void>; wake(): void } {
  let waiters: Array<() => void> = [];
  let pending = false;
  return {
    wait(timeoutMs, signal) {
      if (signal.aborted) return Promise.resolve();
      if (pending) {
        pending = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          waiters = waiters.filter((waiter) => waiter !== done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done, { once: true });
        waiters.push(done);
      });
    },
    wake() {
      if (waiters.length === 0) {
        pending = true;
        return;
      }
      for (const waiter of waiters.slice()) waiter();
    },
  };
}

/** Sleep for `ms` in steps of at most `stepMs`, beating at each, until the signal aborts: a loop
 *  that only waits between passes stays visibly alive to the watchdog. */
export async function sleepBeating(ms: number, stepMs: number, { signal, beat }: Pick<LoopContext, 'signal' | 'beat'>): Promise<void> {
  const until = Date.now() + ms;
  while (!signal.aborted && Date.now() < until) {
    beat();
    await delay(Math.min(stepMs, Math.max(0, until - Date.now())), undefined, { signal }).catch(() => {});
  }
}
