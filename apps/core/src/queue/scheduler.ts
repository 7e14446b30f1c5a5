// The scheduler loop: claim due deliveries in batches (claim-deliveries.ts) up to the free worker
// slots — counting a worker that only waits for its outcome's commit as free, up to
// MAIL_CLAIM_AHEAD of them, so claims and completions overlap instead of alternating — hand them to the attempt workers, and sleep until woken: by NOTIFY mail_delivery_due (the
// deliveries trigger fires on every insert or reschedule), by a worker freeing a slot while more is
// due, or by the polling interval — the fallback that keeps claiming when the LISTEN connection is
// down or a notification was missed. Taking back expired leases is maintenance's job
// (keepalive/maintenance.ts), not a step before each claim.
import type { Pool } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';
import { createWaker, type LoopContext } from '../keepalive/supervisor.ts';
import type { CompletionBatcher } from './completion-batcher.ts';
import type { LiveLeases } from './live-leases.ts';
import { claimDueDeliveries } from './sql/claim-deliveries.ts';
import type { WorkChannel } from './work-channel.ts';

export interface SchedulerOptions {
  pool: Pool;
  channel: WorkChannel;
  workerId: string;
  concurrency: number;
  batchSize: number;
  /** At most this many deliveries are claimed for workers that are only waiting for their
   *  outcome's commit (completion-batcher.ts): the next claim overlaps that commit. */
  claimAhead: number;
  completions: Pick<CompletionBatcher, 'awaitingCommit' | 'onRecord'>;
  /** Leases held for live work: claimed ones are added here (renewed, never taken back by this engine's reclaim). */
  leases: LiveLeases;
  leaseMs: number;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  /** Where each claim is reported ('claim': wanted, claimed, duration; metrics, the benchmark). */
  events: EngineEvents;
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
      while (!signal.aborted) {
        beat();
        if (listenerBroken) throw listenerBroken;
        // A worker waiting only for its outcome's commit is free again within milliseconds: claim
        // for it now, so the claim's own commit overlaps that one instead of following it.
        const almostFree = Math.min(options.claimAhead, options.completions.awaitingCommit);
        const free = options.concurrency + almostFree - options.channel.waiting - options.channel.busy;
        if (free > 0) {
          const wanted = Math.min(free, options.batchSize);
          const t0 = performance.now();
          const claimed = await claimDueDeliveries(options.pool, options.workerId, wanted, options.leaseMs);
          options.events.emit('claim', { wanted, claimed: claimed.length, durationMs: performance.now() - t0 });
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
