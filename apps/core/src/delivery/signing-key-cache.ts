// The DKIM keys this engine has read, kept while mail.dkim_keys has not changed. Each claim brings
// the table's change counter (mail.dkim_keys_generation, bumped by a trigger on every statement that
// writes the keys); a counter other than the last one seen empties the cache. So a key created,
// rotated or retired through the API is used, or no longer used, from the first delivery claimed
// after its commit, as when every signed message read its key — which cost one query per delivery,
// a fifth of the engine's CPU in smtp mode (docs/performance-runs.md).
//
// A read that started before the counter moved may finish after it: its answer is not kept (the
// epoch it started in is over). Until a claim has been seen nothing is kept, every call reads.
import type { SigningKey } from '@postern/shared';

export type KeyLookup = (domain: string) => Promise<SigningKey | null>;

/** Domains kept at most; past it the cache starts again empty (From domains are few). */
const MAX_DOMAINS = 10_000;

export class SigningKeyCache {
  private generation: string | null = null;
  private epoch = 0;
  private readonly keys = new Map<string, SigningKey | null>();

  /** The counter as a claim saw it: a new value forgets every key read so far. */
  observe(generation: string): void {
    if (generation === this.generation) return;
    this.generation = generation;
    this.epoch += 1;
    this.keys.clear();
  }

  /** `read` behind the cache: a domain's answer (a key or none) is kept until the counter moves. */
  cached(read: KeyLookup): KeyLookup {
    return async (domain) => {
      // Kept only once a claim was seen (below): a kept answer is always of the current counter.
      if (this.keys.has(domain)) return this.keys.get(domain) ?? null;
      const epoch = this.epoch;
      const known = this.generation !== null;
      const key = await read(domain);
      if (known && epoch === this.epoch) {
        if (this.keys.size >= MAX_DOMAINS) this.keys.clear();
        this.keys.set(domain, key);
      }
      return key;
    };
  }
}
