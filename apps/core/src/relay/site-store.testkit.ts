// An in-memory SiteStore with the semantics of the PostgreSQL one (site-store.ts; e2e/mx tests
// that one): slots below the limit free once their lease ran out, a backoff refusing every claim
// and, once over but not cleared, allowing slot 0 alone (the probe),
// a token per message while `tokens` lasts.
import type { SiteStore, SlotClaim } from './site-store.ts';

export interface MemorySiteStore extends SiteStore {
  /** Slots held (lease not run out) per site. */
  heldSlots(site: string): number;
  backoffs: Map<string, { until: number; failures: number; reason: string }>;
  /** Tokens left per site; a site not in it has no limit here. */
  tokens: Map<string, number>;
}

export function createMemorySiteStore(now: () => number = Date.now): MemorySiteStore {
  const slots = new Map<string, Map<number, { holder: string; expiresAt: number }>>();
  const backoffs = new Map<string, { until: number; failures: number; reason: string }>();
  const tokens = new Map<string, number>();
  const slotsOf = (site: string) => {
    let held = slots.get(site);
    if (!held) {
      held = new Map();
      slots.set(site, held);
    }
    return held;
  };
  return {
    backoffs,
    tokens,
    heldSlots: (site) => [...slotsOf(site).values()].filter((slot) => slot.expiresAt > now()).length,
    async claimSlot(site, maxConnections, holder, leaseMs): Promise<SlotClaim> {
      const backoff = backoffs.get(site);
      if (backoff && backoff.until > now()) return { kind: 'backoff', retryInMs: backoff.until - now() };
      const held = slotsOf(site);
      // A backoff over but not cleared: the site is probed on slot 0 alone.
      const limit = backoff ? 1 : maxConnections;
      for (let slot = 0; slot < limit; slot += 1) {
        if ((held.get(slot)?.expiresAt ?? 0) <= now()) {
          held.set(slot, { holder, expiresAt: now() + leaseMs });
          return { kind: 'slot', slot };
        }
      }
      return { kind: 'full', probing: backoff !== undefined };
    },
    async releaseSlot(site, slot, holder) {
      const held = slotsOf(site);
      if (held.get(slot)?.holder === holder) held.delete(slot);
    },
    async renewSlots(holders, leaseMs) {
      const renewed = new Set<string>();
      for (const held of slots.values()) {
        for (const slot of held.values()) {
          if (holders.includes(slot.holder) && slot.expiresAt > now()) {
            slot.expiresAt = now() + leaseMs;
            renewed.add(slot.holder);
          }
        }
      }
      return renewed;
    },
    async takeToken(site) {
      const left = tokens.get(site);
      if (left === undefined) return true;
      if (left < 1) return false;
      tokens.set(site, left - 1);
      return true;
    },
    async backOff(site, baseMs, reason) {
      const current = backoffs.get(site);
      if (current && current.until > now()) return { retryInMs: current.until - now(), failures: current.failures };
      const failures = (current?.failures ?? 0) + 1;
      const retryInMs = baseMs * 2 ** Math.min(failures - 1, 5);
      backoffs.set(site, { until: now() + retryInMs, failures, reason });
      return { retryInMs, failures };
    },
    async clearBackoff(site) {
      backoffs.delete(site);
    },
  };
}
