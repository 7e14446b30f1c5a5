// The scheduler loop: claim due deliveries in batches up to the free worker slots (claim-size.ts),
// hand them to the attempt workers through the work channel, and sleep until woken: by a due
// notification (due-listener.ts: NOTIFY mail_delivery_due, fired by the deliveries trigger for a
// row due when inserted or rescheduled), by a worker freeing a slot or handing over its outcome
// while more is due, or by the polling interval — which also claims a retry once its time comes,
// and whatever a missed notification announced.
// Everything it talks to is handed in (claim, wake source, channel, completions), so it holds no
// PostgreSQL code of its own and is tested with fakes (scheduler.test.ts). Taking back expired
// leases is maintenance's job (keepalive/maintenance.ts), not a step before each claim.

import type { ClaimedDelivery } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';
import { createWaker, type LoopContext } from '../keepalive/supervisor.ts';
import { type ClaimSizing, claimSize } from './claim-size.ts';
import type { CompletionBatcher } from './completion-batcher.ts';
import type { WakeSource } from './due-listener.ts';
import type { WorkChannel } from './work-channel.ts';

export interface SchedulerOptions {
  /** Claims up to `wanted` due deliveries as this engine's leases (and holds them live). */
  claim: (wanted: number) => Promise<readonly ClaimedDelivery[]>;
  /** Opens what wakes the scheduler between polls, for one run of its loop; a broken one ends the run. */
  listen: (wake: () => void) => Promise<WakeSource>;
  channel: Pick<WorkChannel, 'waiting' | 'busy' | 'push' | 'onSlotFree'>;
  /** A worker waiting only for its outcome's commit is free again within milliseconds. */
  completions: Pick<CompletionBatcher, 'awaitingCommit' | 'onRecord'>;
  sizing: ClaimSizing;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  events: EngineEvents;
}

export function createScheduler(options: SchedulerOptions): { body: (context: LoopContext) => Promise<void> } {
  const { channel, completions, sizing, events } = options;
  const waker = createWaker();
  let moreDue = false;
  channel.onSlotFree(() => {
    if (moreDue) waker.wake();
  });
  completions.onRecord(() => {
    if (moreDue && sizing.claimAhead > 0) waker.wake();
  });

  async function body({ signal, beat, progress }: LoopContext): Promise<void> {
    const wakeSource = await options.listen(waker.wake);
    try {
      while (!signal.aborted) {
        beat();
        if (wakeSource.broken) throw wakeSource.broken;
        const wanted = claimSize(sizing, { waiting: channel.waiting, busy: channel.busy, awaitingCommit: completions.awaitingCommit });
        if (wanted > 0) {
          const t0 = performance.now();
          const claimed = await options.claim(wanted);
          events.emit('claim', { wanted, claimed: claimed.length, durationMs: performance.now() - t0 });
          if (claimed.length > 0) {
            // Claimed while stopping: handed to the channel all the same, the engine's stop releases it.
            channel.push(claimed);
            if (signal.aborted) break;
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
      wakeSource.close();
    }
  }

  return { body };
}
