// Hand-over between the scheduler (which claims) and the attempt workers (which send): claimed
// deliveries wait here for a free worker. The scheduler claims only for free workers and for
// workers that wait for nothing but their outcome's commit, so nothing sits leased in memory for
// long: at most about one commit (a hanging relay makes the scheduler claim nothing ahead).
import type { ClaimedDelivery } from '@postern/shared';

export class WorkChannel {
  #items: ClaimedDelivery[] = [];
  #takers: Array<(item: ClaimedDelivery | null) => void> = [];
  #busy = 0;
  #onSlotFree: () => void = () => {};

  get waiting(): number {
    return this.#items.length;
  }

  get busy(): number {
    return this.#busy;
  }

  onSlotFree(listener: () => void): void {
    this.#onSlotFree = listener;
  }

  push(items: readonly ClaimedDelivery[]): void {
    for (const item of items) {
      const taker = this.#takers.shift();
      if (taker) {
        // Counted as busy at the hand-over itself, not when the worker resumes: the scheduler
        // computes its free slots in between and must not claim for a worker already served.
        this.#busy += 1;
        taker(item);
      } else this.#items.push(item);
    }
  }

  /** The next delivery, or null after timeoutMs / on abort (the worker then beats and asks again).
   *  A delivery taken counts as busy until finished() is called. */
  take(timeoutMs: number, signal: AbortSignal): Promise<ClaimedDelivery | null> {
    const item = this.#items.shift();
    if (item) {
      this.#busy += 1;
      return Promise.resolve(item);
    }
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const finish = (value: ClaimedDelivery | null) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#takers = this.#takers.filter((taker) => taker !== finish);
        resolve(value);
      };
      const onAbort = () => finish(null);
      const timer = setTimeout(() => finish(null), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#takers.push(finish);
    });
  }

  /** A delivery taken by a worker instance that was abandoned before it started: first in line
   *  again, for the next worker. */
  giveBack(item: ClaimedDelivery): void {
    this.#busy -= 1;
    this.#items.unshift(item);
    const taker = this.#takers.shift();
    if (taker) {
      this.#items.shift();
      this.#busy += 1;
      taker(item);
    }
  }

  finished(): void {
    this.#busy -= 1;
    this.#onSlotFree();
  }

  /** Everything not yet started (shutdown: these are released, not sent). */
  drain(): ClaimedDelivery[] {
    return this.#items.splice(0);
  }
}
