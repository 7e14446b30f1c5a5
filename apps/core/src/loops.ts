// Every background loop of the engine, each under its supervisor (keepalive/supervisor.ts):
//   stream-consumer   Redis Stream intake (only with MAIL_REDIS_MASTER_ADDR)
//   scheduler         claims due deliveries, woken by NOTIFY mail_delivery_due (queue/scheduler.ts)
//   attempt-worker-N  MAIL_ATTEMPT_WORKER_CONCURRENCY of them, one send at a time each
//   lease-keeper      renews the leases of the work this engine holds (queue/lease-keeper.ts)
//   lease-reclaim     takes back the expired leases of dead or stalled engines (maintenance)
//   retention         purges old payloads, attempts, idempotency reservations, dead engines' rows (maintenance)
//   heartbeat         writes every loop's heartbeat to mail.workers
// plus the watchdog timer, and the ordered stop (SIGTERM): stop claiming and reading, release what
// was claimed but not started, let sends under way finish, interrupt the stragglers at the
// deadline (they are recorded and released, due again at once), then say goodbye in mail.workers.
// The two maintenance loops run keepalive/maintenance.ts's passes on timers; an engine started
// without them (EngineDeps.maintenanceLoops: false) runs those passes only when asked. Restarts
// and stalls are reported as engine events (engine-events.ts).
import { setTimeout as delay } from 'node:timers/promises';
import { childLogger, type DeliveryLifecycle, type Logger, type Pool, type PosternConfig } from '@postern/shared';
import { type AttemptDeps, attemptDelivery } from './delivery/attempt-worker.ts';
import type { EngineEvents } from './engine-events.ts';
import { writeHeartbeats } from './keepalive/heartbeat.ts';
import { type LoopContext, type SupervisedLoop, superviseLoop } from './keepalive/supervisor.ts';
import { startWatchdog } from './keepalive/watchdog.ts';
import { createLeaseKeeper } from './queue/lease-keeper.ts';
import type { LiveLeases } from './queue/live-leases.ts';
import type { WorkChannel } from './queue/work-channel.ts';
import type { Relay } from './relay/relay.ts';

type LoopBody = (context: LoopContext) => Promise<void>;

/** Outcomes of one worker that may wait for their commit while it works on the next delivery. */
const RECORDINGS_PER_WORKER = 2;
type Body = { body: LoopBody };

export interface LoopsOptions {
  config: PosternConfig;
  pool: Pool;
  /** Lease renewal, and the release of claims never started at shutdown. */
  lifecycle: Pick<DeliveryLifecycle, 'renewLeases' | 'release'>;
  channel: WorkChannel;
  scheduler: Body;
  consumer: Body | null;
  /** The maintenance loops (keepalive/maintenance.ts), or null: maintenance runs on demand only. */
  maintenance: { 'lease-reclaim': LoopBody; retention: LoopBody } | null;
  attempt: AttemptDeps;
  /** Leases held for live work: released when an attempt ends or is abandoned, renewed meanwhile. */
  leases: LiveLeases;
  workerId: string;
  events: EngineEvents;
  logger: Logger;
}

export interface RunningLoops {
  loops: SupervisedLoop[];
  /** Loops whose heartbeat is older than the stall threshold, or that are not running. */
  staleLoops(): string[];
  stop(budgetMs: number, relay: Relay): Promise<void>;
}

export function startLoops(options: LoopsOptions): RunningLoops {
  const { config, channel, events, logger } = options;
  const engine = config.engine;
  const supervise = (name: string, body: LoopBody) => superviseLoop({ name, body, logger, events });

  // Outcomes handed to the completion batcher whose commit is still under way, across all workers:
  // the ordered stop waits for them as for sends (their leases are held until they are recorded).
  let recordingsInFlight = 0;

  // One worker instance: it takes work only while it is neither stopping nor abandoned. When the
  // watchdog abandons it mid-send (the slot of a stalled worker was never freed, so with
  // one worker nothing was delivered again and /readyz said 200 all along), the slot is freed at
  // once. Its lease stays renewed for one more whole-send deadline: an attempt that was only slow
  // (a statement waiting on a hung PostgreSQL, say) finishes and records its result before anyone
  // could take the delivery back and send it again; one that is truly hung loses the lease then and
  // is reclaimed like a dead engine's. A result that still comes later is recorded if nobody has
  // started the delivery again (the lifecycle's late outcomes).
  // A worker's slot is a send, not a commit: once its outcome is handed to the completion batcher
  // the worker takes the next delivery while that commit runs (the attempt's end — retrying the
  // write, the lease's release — goes on without it), so the commits of consecutive batches
  // overlap instead of each claim waiting for the last commit. Its earlier outcomes it waits for
  // only when RECORDINGS_PER_WORKER are still uncommitted: work in hand stays bounded when
  // PostgreSQL is slow, and a failure while recording still ends the worker's run (supervisor restart).
  const workerBody = async (context: LoopContext) => {
    const stopping = AbortSignal.any([context.signal, context.abandoned]);
    const recordings = new Set<Promise<void>>();
    let recordingFailed: { error: unknown } | null = null;
    const throwIfRecordingFailed = () => {
      if (recordingFailed) throw recordingFailed.error;
    };
    try {
      while (!stopping.aborted) {
        throwIfRecordingFailed();
        context.beat();
        const delivery = await channel.take(engine.heartbeatIntervalMs, stopping);
        if (!delivery) continue;
        const lease = { id: delivery.id, attemptNumber: delivery.attempt_count };
        if (context.abandoned.aborted) {
          channel.giveBack(delivery);
          return;
        }
        let slotHeld = true;
        const freeSlot = () => {
          if (!slotHeld) return;
          slotHeld = false;
          context.setBusy(false);
          channel.finished();
        };
        // A stop that gave up waiting abandons too, but then the slot stays counted: the ordered stop
        // waits for it to be recorded before it closes the pool.
        let leaseGrace: NodeJS.Timeout | undefined;
        const onAbandoned = () => {
          if (context.signal.aborted) return;
          freeSlot();
          leaseGrace = setTimeout(() => options.leases.release(lease), config.smtp.sendDeadlineMs);
          leaseGrace.unref();
          logger.warn(
            { deliveryId: delivery.id, attempt: delivery.attempt_count, leaseKeptMs: config.smtp.sendDeadlineMs },
            'stalled attempt abandoned: its slot is free; its lease is renewed for one more whole-send deadline',
          );
        };
        context.abandoned.addEventListener('abort', onAbandoned, { once: true });
        context.setBusy(true);
        let handedOver = false;
        let onHandOver: () => void = () => {};
        const handOver = new Promise<'handed-over'>((resolve) => {
          onHandOver = () => resolve('handed-over');
        });
        const attempt = attemptDelivery(options.attempt, delivery, context.beat, () => {
          if (handedOver) return;
          handedOver = true;
          recordingsInFlight += 1;
          onHandOver();
        }).finally(() => {
          if (handedOver) recordingsInFlight -= 1;
          context.abandoned.removeEventListener('abort', onAbandoned);
          clearTimeout(leaseGrace);
          options.leases.release(lease);
          freeSlot();
        });
        if ((await Promise.race([attempt, handOver])) === 'handed-over') {
          const recording = attempt.then(
            () => {},
            (error: unknown) => {
              recordingFailed ??= { error };
            },
          );
          recordings.add(recording);
          void recording.finally(() => recordings.delete(recording));
          freeSlot();
          while (recordings.size >= RECORDINGS_PER_WORKER) await Promise.race(recordings);
        }
        context.progress();
      }
      throwIfRecordingFailed();
    } finally {
      // Nothing of this worker is left unrecorded when its run ends (stop, abandon, failure).
      await Promise.all(recordings);
    }
  };

  const loops: SupervisedLoop[] = [];
  const heartbeatBody = async ({ signal, beat, progress }: LoopContext) => {
    while (!signal.aborted) {
      beat();
      await writeHeartbeats(options.pool, options.workerId, loops.map((loop) => loop.status));
      progress();
      await delay(engine.heartbeatIntervalMs, undefined, { signal }).catch(() => {});
    }
  };

  const consumerLoop = options.consumer ? supervise('stream-consumer', options.consumer.body) : null;
  const schedulerLoop = supervise('scheduler', options.scheduler.body);
  const workerLoops = Array.from({ length: engine.attemptWorkerConcurrency }, (_, index) => supervise(`attempt-worker-${index}`, workerBody));
  const leaseKeeper = createLeaseKeeper({
    lifecycle: options.lifecycle,
    workerId: options.workerId,
    leases: options.leases,
    leaseMs: engine.leaseDurationMs,
    heartbeatIntervalMs: engine.heartbeatIntervalMs,
    logger: childLogger(logger, { component: 'lease-keeper' }),
  });
  const leaseKeeperLoop = supervise('lease-keeper', leaseKeeper.body);
  const reclaimLoop = options.maintenance ? supervise('lease-reclaim', options.maintenance['lease-reclaim']) : null;
  const retentionLoop = options.maintenance ? supervise('retention', options.maintenance.retention) : null;
  const heartbeatLoop = supervise('heartbeat', heartbeatBody);
  loops.push(
    ...(consumerLoop ? [consumerLoop] : []),
    schedulerLoop,
    ...workerLoops,
    leaseKeeperLoop,
    ...(reclaimLoop && retentionLoop ? [reclaimLoop, retentionLoop] : []),
    heartbeatLoop,
  );
  for (const loop of loops) logger.info({ loop: loop.name }, 'loop started');

  const workerNames = new Set(workerLoops.map((loop) => loop.name));
  const workerStuckAfterMs = Math.min(engine.watchdogStallThresholdMs, config.smtp.timeoutMs + engine.heartbeatIntervalMs);
  const watchdog = startWatchdog({
    loops: () => loops,
    stallThresholdMs: engine.watchdogStallThresholdMs,
    onlyWhenBusy: (loop) => workerNames.has(loop.name),
    logger,
    events,
  });

  return {
    loops,
    staleLoops() {
      const now = Date.now();
      return loops
        .filter((loop) => {
          const age = now - loop.status.heartbeatAt;
          if (loop.status.state !== 'running' || age > engine.watchdogStallThresholdMs) return true;
          // A worker beats on every relay reply; one holding work that has not beaten for longer
          // than a reply may take is stuck, and its slot is not free until the watchdog acts.
          return workerNames.has(loop.name) && loop.status.busy && age > workerStuckAfterMs;
        })
        .map((loop) => `${loop.name} (${loop.status.state}${loop.status.busy ? ', stuck in a send' : ''}${loop.status.lastError ? `: ${loop.status.lastError}` : ''})`);
    },
    async stop(budgetMs, relay) {
      const started = Date.now();
      const left = (fraction: number) => Math.max(0, started + budgetMs * fraction - Date.now());
      watchdog.stop();
      await Promise.all([schedulerLoop.stop(left(0.2)), consumerLoop?.stop(left(0.2)), reclaimLoop?.stop(left(0.2))]);
      const unstarted = channel.drain();
      if (unstarted.length > 0) {
        const released = await options.lifecycle.release(options.workerId, unstarted.map((delivery) => delivery.id)).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not release claimed deliveries; their leases will expire');
          return 0;
        });
        logger.info({ released }, 'released deliveries claimed but not started');
      }
      const finished = await Promise.all(workerLoops.map((loop) => loop.stop(left(0.6))));
      const inFlight = () => channel.busy + recordingsInFlight;
      if (finished.some((ended) => !ended) || inFlight() > 0) {
        logger.warn({ inFlight: inFlight() }, 'shutdown deadline near: interrupting sends under way');
        relay.interrupt();
        while (inFlight() > 0 && left(0.85) > 0) await delay(20);
        if (inFlight() > 0) logger.error({ inFlight: inFlight() }, 'sends still unrecorded at the deadline; their leases will expire');
      }
      await leaseKeeperLoop.stop(left(0.9));
      await retentionLoop?.stop(left(0.9));
      await heartbeatLoop.stop(left(0.9));
      await writeHeartbeats(options.pool, options.workerId, loops.map((loop) => ({ ...loop.status, state: 'stopped' as const }))).catch(() => {});
    },
  };
}
