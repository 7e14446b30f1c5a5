// Maintenance: the passes that keep the shared queue healthy without claiming anything.
//   lease reclaim  takes back the leases of engines that died or stalled, with the bounces of what
//                  that dead-letters (queue/reclaim-leases.ts; stalled-worker, docs/incidents.md);
//   retention      purges old payloads, attempts, idempotency reservations, dead engines'
//                  worker rows, idle destination sites' shaping state, expired MTA-STS policies
//                  and old quarantined commands (retention.ts).
// Each is one function that runs one pass now and returns what it did. Two supervised loops run
// them on timers ('lease-reclaim': a few times per lease period, at least every 5 s; 'retention':
// every MAIL_RETENTION_INTERVAL), and engine.maintenance runs them on demand, so a test triggers a
// pass instead of waiting for a timer. Passes of one kind never overlap: one asked for while
// another runs starts when that one ends, so what it returns is what it did itself.
import { childLogger, type DeliveryLifecycle, type Logger, type Pool, type PosternConfig } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';
import type { EngineMetrics } from '../metrics.ts';
import type { LiveLeases } from '../queue/live-leases.ts';
import { type LostLeaseEnding, type ReclaimResult, reclaimPass } from '../queue/reclaim-leases.ts';
import { BATCHED_PURGES, type Purged, purgeExpired, RETENTION_BATCH } from './retention.ts';
import { type LoopContext, sleepBeating } from './supervisor.ts';

export interface Maintenance {
  /** Take back expired leases now (at most RECLAIM_LIMIT). Never throws: a pass that fails is
   *  logged and counted, and returns nothing taken back. */
  reclaimExpiredLeases(): Promise<ReclaimResult>;
  /** Purge what retention allows now, batch after batch until none is full; the rows purged. */
  applyRetention(): Promise<Purged>;
}

export interface MaintenanceOptions {
  pool: Pool;
  engine: Pick<
    PosternConfig['engine'],
    'leaseDurationMs' | 'retentionAgeMs' | 'idempotencyWindowMs' | 'retentionIntervalMs' | 'heartbeatIntervalMs'
  >;
  /** The reclaim's status changes. */
  lifecycle: Pick<DeliveryLifecycle, 'transaction' | 'expiredLeaseIds'>;
  maxAttempts: number;
  /** How a lease that dead-letters ends: its reason and bounce (delivery/fail-for-good.ts). */
  endLostLease: LostLeaseEnding;
  /** Leases this engine holds for live work: never taken back by its own reclaim. */
  leases: LiveLeases;
  metrics: EngineMetrics;
  events: EngineEvents;
  logger: Logger;
}

type Body = (context: LoopContext) => Promise<void>;

/** Most leases one reclaim pass takes back. */
export const RECLAIM_LIMIT = 100;

/** Leases are checked a few times per lease period, and at least every 5 s. */
export function reclaimIntervalMs(leaseMs: number): number {
  return Math.min(5_000, Math.max(250, Math.floor(leaseMs / 4)));
}

/** Calls of `pass` one after another: a call made while one runs waits for it to end first. */
function oneAtATime<A extends unknown[], T>(pass: (...args: A) => Promise<T>): (...args: A) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return (...args) => {
    const run = last.then(() => pass(...args));
    last = run.catch(() => {});
    return run;
  };
}

export function createMaintenance(options: MaintenanceOptions): Maintenance & { loops: { 'lease-reclaim': Body; retention: Body } } {
  const { engine, events } = options;
  const reclaimLog = childLogger(options.logger, { component: 'lease-reclaim' });
  const retentionLog = childLogger(options.logger, { component: 'retention' });

  const reclaim = oneAtATime(async (): Promise<ReclaimResult> => {
    const taken = await reclaimPass({
      lifecycle: options.lifecycle,
      limit: RECLAIM_LIMIT,
      maxAttempts: options.maxAttempts,
      leaseMs: engine.leaseDurationMs,
      endLostLease: options.endLostLease,
      liveIds: options.leases.ids(),
      metrics: options.metrics,
      logger: reclaimLog,
    });
    if (taken.reclaimed > 0) events.emit('lease:reclaimed', taken);
    return taken;
  });

  // From the loop: beat between batches, and stop after the batch under way when the engine stops.
  const retain = oneAtATime(async ({ beat, signal }: Pick<LoopContext, 'beat' | 'signal'>): Promise<Purged> => {
    const total: Purged = { payloads: 0, attempts: 0, reservations: 0, workers: 0, siteSlots: 0, siteBuckets: 0, siteBackoffs: 0, mtaStsPolicies: 0, malformedCommands: 0 };
    const keys = Object.keys(total) as (keyof Purged)[];
    let purged: Purged;
    do {
      purged = await purgeExpired(options.pool, engine);
      if (keys.some((key) => purged[key] > 0)) {
        retentionLog.info(
          purged,
          "retention: purged old payloads, attempts, idempotency reservations, dead engines' worker rows, idle sites' shaping state, long-expired MTA-STS policies and old quarantined commands",
        );
      }
      for (const key of keys) total[key] += purged[key];
      beat();
      // Worker rows go all at once, so only the batched purges can have more left.
    } while (!signal.aborted && BATCHED_PURGES.some((key) => purged[key] === RETENTION_BATCH));
    if (keys.some((key) => total[key] > 0)) events.emit('retention:purged', total);
    return total;
  });

  const every = (intervalMs: number, pass: (context: LoopContext) => Promise<unknown>): Body =>
    async (context) => {
      while (!context.signal.aborted) {
        context.beat();
        await pass(context);
        context.progress();
        await sleepBeating(intervalMs, engine.heartbeatIntervalMs, context);
      }
    };

  return {
    reclaimExpiredLeases: () => reclaim(),
    applyRetention: () => retain({ beat: () => {}, signal: new AbortController().signal }),
    loops: {
      'lease-reclaim': every(reclaimIntervalMs(engine.leaseDurationMs), () => reclaim()),
      retention: every(engine.retentionIntervalMs, retain),
    },
  };
}
