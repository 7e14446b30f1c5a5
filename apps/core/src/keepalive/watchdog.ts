// The stalled-loop watchdog (stalled-worker: five workers alive, logging nothing, taking no work, for a
// day). It is a plain timer over in-memory state — no I/O that could itself hang — and restarts a
// loop whose heartbeat has not advanced for MAIL_WATCHDOG_STALL_THRESHOLD while it has work: an
// attempt worker holding a delivery (an SMTP send hanging past every timeout, say), or a loop that
// always has work (scheduler, stream consumer). The abandoned instance's leased delivery becomes
// claimable by any engine when its lease expires (reclaim-expired-leases.ts).
import { childLogger, type Logger } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';
import type { SupervisedLoop } from './supervisor.ts';

export interface WatchdogOptions {
  loops: () => readonly SupervisedLoop[];
  stallThresholdMs: number;
  /** Loops that only stall while holding work; others are always expected to beat. */
  onlyWhenBusy: (loop: SupervisedLoop) => boolean;
  logger: Logger;
  /** Where each stall is reported ('loop:stall'; metrics count them). */
  events: EngineEvents;
}

export function startWatchdog(options: WatchdogOptions): { stop(): void } {
  const log = childLogger(options.logger, { component: 'watchdog' });
  const checkEveryMs = Math.max(100, Math.min(5_000, Math.floor(options.stallThresholdMs / 4)));
  const timer = setInterval(() => {
    const now = Date.now();
    for (const loop of options.loops()) {
      const { status } = loop;
      if (status.state !== 'running') continue;
      const ageMs = now - status.heartbeatAt;
      if (ageMs <= options.stallThresholdMs) continue;
      if (options.onlyWhenBusy(loop) && !status.busy) continue;
      log.error({ loop: loop.name, heartbeatAgeMs: ageMs, busy: status.busy }, 'loop stalled: restarting it');
      options.events.emit('loop:stall', { loop: loop.name, heartbeatAgeMs: ageMs });
      loop.restart(`stalled: no heartbeat for ${ageMs} ms while holding work`);
    }
  }, checkEveryMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
