// The leases this engine holds for work that is still alive in it: claimed and waiting for a
// worker, or in a send, or waiting for its outcome's commit. Two things read it, so that an
// engine never re-sends its own work:
//   - the lease keeper renews exactly these leases on a timer (lease-keeper.ts), so a slow
//     send, or an outcome waiting for PostgreSQL to come back, never outlives its lease;
//   - the lease reclaim never takes one of these back, even when PostgreSQL says it expired (the
//     database was away for longer than the lease, so renewal could not reach it).
// An attempt the watchdog abandons is dropped from here one whole-send deadline later (loops.ts),
// unless it ends first: then it stops being renewed and is reclaimed like a dead engine's once its
// lease runs out. Keyed by attempt number too, so a late
// release by an abandoned attempt cannot drop the lease of the same delivery's next attempt.
import type { HeldLease } from '@postern/shared';

export class LiveLeases {
  #held = new Map<string, number>();

  hold(lease: HeldLease): void {
    this.#held.set(lease.id, lease.attemptNumber);
  }

  release(lease: HeldLease): void {
    if (this.#held.get(lease.id) === lease.attemptNumber) this.#held.delete(lease.id);
  }

  list(): HeldLease[] {
    return [...this.#held].map(([id, attemptNumber]) => ({ id, attemptNumber }));
  }

  ids(): string[] {
    return [...this.#held.keys()];
  }

  get size(): number {
    return this.#held.size;
  }
}
