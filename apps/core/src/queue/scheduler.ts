// The scheduler loop: claim due deliveries in batches (the lifecycle's claim) up to the free worker
// slots — counting a worker that only waits for its outcome's commit as free, up to
// MAIL_CLAIM_AHEAD of them, so claims and completions overlap instead of alternating — hand them to the attempt workers, and sleep until woken: by NOTIFY mail_delivery_due (the
// deliveries trigger fires on every insert or reschedule), by a worker freeing a slot while more is
// due, or by the polling interval — the fallback that keeps claiming when the LISTEN connection is
// down or a notification was missed. Expired leases are taken back on the way (stalled-worker, docs/incidents.md), with the
// bounces of accepted mail that this dead-letters (reclaim-leases.ts).
import type { DeliveryLifecycle, Logger, Pool } from '@postern/shared';
import { createWaker, type LoopContext } from '../keepalive/supervisor.ts';
import type { EngineMetrics } from '../metrics.ts';
import type { CompletionBatcher } from './completion-batcher.ts';
import type { LiveLeases } from './live-leases.ts';
import { type LostLeaseEnding, reclaimPass } from './reclaim-leases.ts';
import type { WorkChannel } from './work-channel.ts';

export interface SchedulerOptions {
  /** The LISTEN connection comes from here. */
  pool: Pool;
  /** Claims, and the reclaim's status changes. */
  lifecycle: Pick<DeliveryLifecycle, 'claim' | 'transaction' | 'expiredLeaseIds'>;
  channel: WorkChannel;
  workerId: string;
  concurrency: number;
  batchSize: number;
  /** At most this many deliveries are claimed for workers that are only waiting for their
   *  outcome's commit (completion-batcher.ts): the next claim overlaps that commit. */
  claimAhead: number;
  completions: Pick<CompletionBatcher, 'awaitingCommit' | 'onRecord'>;
  /** Leases held for live work: claimed ones are added here, and the reclaim never takes them. */
  leases: LiveLeases;
  leaseMs: number;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  maxAttempts: number;
  /** How a lease that dead-letters ends: its reason and bounce (delivery/fail-for-good.ts). */
  endLostLease: LostLeaseEnding;
  metrics: EngineMetrics;
  logger: Logger;
  /** Told the duration of each claim statement (ms) and how many deliveries it claimed. */
  onClaim?: (durationMs: number, claimed: number) => void;
}

export function createScheduler(options: SchedulerOptions): { body: (context: LoopContext) => Promise<void> } {
  const waker = createWaker();
  let moreDue = false;
  options.channel.onSlotFree(() => {
    if (moreDue) waker.wake();
  });
  options.completions.onRecord(() => {
    if (moreDue && options.claimAhead > 0) waker.wake();
  });
  // Leases are checked a few times per lease period, and at least every 5 s.
  const reclaimEveryMs = Math.min(5_000, Math.max(250, Math.floor(options.leaseMs / 4)));

  async function body({ signal, beat, progress }: LoopContext): Promise<void> {
    const listener = await options.pool.connect();
    let listenerBroken: Error | null = null;
    const onNotification = () => waker.wake();
    const onBroken = (error?: Error) => {
      listenerBroken = error ?? new Error('LISTEN connection ended');
      waker.wake();
    };
    listener.on('notification', onNotification);
    listener.on('error', onBroken);
    listener.on('end', onBroken);
    try {
      await listener.query('LISTEN mail_delivery_due');
      let nextReclaim = 0;
      while (!signal.aborted) {
        beat();
        if (listenerBroken) throw listenerBroken;
        if (Date.now() >= nextReclaim) {
          // Never throws (reclaim-leases.ts): a poisoned lease must not stop the claims below.
          await reclaimPass({
            lifecycle: options.lifecycle,
            limit: 100,
            maxAttempts: options.maxAttempts,
            leaseMs: options.leaseMs,
            endLostLease: options.endLostLease,
            liveIds: options.leases.ids(),
            metrics: options.metrics,
            logger: options.logger,
          });
          nextReclaim = Date.now() + reclaimEveryMs;
        }
        // A worker waiting only for its outcome's commit is free again within milliseconds: claim
        // for it now, so the claim's own commit overlaps that one instead of following it.
        const almostFree = Math.min(options.claimAhead, options.completions.awaitingCommit);
        const free = options.concurrency + almostFree - options.channel.waiting - options.channel.busy;
        if (free > 0) {
          const wanted = Math.min(free, options.batchSize);
          const t0 = performance.now();
          const claimed = await options.lifecycle.claim(options.workerId, wanted, options.leaseMs);
          const claimMs = performance.now() - t0;
          options.metrics.claimDuration.observe(claimMs);
          options.onClaim?.(claimMs, claimed.length);
          for (const delivery of claimed) options.leases.hold({ id: delivery.id, attemptNumber: delivery.attempt_count });
          if (claimed.length > 0) {
            if (signal.aborted) {
              // Claimed while stopping: handed to the channel anyway, the engine's stop releases it.
              options.channel.push(claimed);
              break;
            }
            options.channel.push(claimed);
            progress();
          }
          moreDue = claimed.length === wanted;
          if (moreDue) continue;
        } else {
          moreDue = true;
        }
        await waker.wait(Math.min(options.pollIntervalMs, options.heartbeatIntervalMs), signal);
      }
    } finally {
      listener.off('notification', onNotification);
      // The LISTEN session is not handed back to the pool: another user would inherit it.
      listener.release(true);
    }
  }

  return { body };
}
