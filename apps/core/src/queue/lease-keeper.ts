// The lease keeper loop: while this engine is alive, the leases of the work it holds
// (live-leases.ts: claimed, in a send, or waiting for an outcome's commit) are renewed every third
// of MAIL_LEASE_DURATION, in one statement (the lifecycle's renewLeases). Without it, a send slower
// than the lease (a relay answering every command just under MAIL_SMTP_TIMEOUT) would be taken back
// by the engine's own reclaim and sent again: a duplicate with ONE engine and nothing dead.
// Two renewals can fail in a row and the lease still holds; if PostgreSQL is away longer than
// that, the reclaim still never takes these leases (it skips live ones), and renewal resumes
// — expired or not — as soon as the database answers.

import { setTimeout as delay } from 'node:timers/promises';
import type { DeliveryLifecycle, Logger } from '@postern/shared';
import type { LoopContext } from '../keepalive/supervisor.ts';
import type { LiveLeases } from './live-leases.ts';

export interface LeaseKeeperOptions {
  lifecycle: Pick<DeliveryLifecycle, 'renewLeases'>;
  workerId: string;
  leases: LiveLeases;
  leaseMs: number;
  heartbeatIntervalMs: number;
  logger: Logger;
}

export function renewalIntervalMs(leaseMs: number): number {
  return Math.max(50, Math.floor(leaseMs / 3));
}

export function createLeaseKeeper(options: LeaseKeeperOptions): { body: (context: LoopContext) => Promise<void> } {
  const everyMs = renewalIntervalMs(options.leaseMs);
  async function body({ signal, beat, progress }: LoopContext): Promise<void> {
    while (!signal.aborted) {
      beat();
      const held = options.leases.list();
      if (held.length > 0) {
        const renewed = await options.lifecycle.renewLeases(options.workerId, held, options.leaseMs);
        // Still held but not renewed: lost to another engine's reclaim while this one could not
        // reach PostgreSQL (the late-result rule decides what its outcome can still do).
        const lost = held.filter((lease) => !renewed.has(lease.id) && options.leases.ids().includes(lease.id));
        if (lost.length > 0) options.logger.warn({ deliveryIds: lost.map((lease) => lease.id) }, 'leases could not be renewed: no longer held by this engine');
      }
      progress();
      // Sleep in heartbeat-sized steps so the loop stays visibly alive between renewals.
      const until = Date.now() + everyMs;
      while (!signal.aborted && Date.now() < until) {
        beat();
        await delay(Math.min(options.heartbeatIntervalMs, Math.max(0, until - Date.now())), undefined, { signal }).catch(() => {});
      }
    }
  }
  return { body };
}
