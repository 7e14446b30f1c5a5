// Messages per client network (IPv4 address, IPv6 /64: packages/shared/src/net/client-network.ts)
// per minute, as a token bucket (bursts up to the limit, refilled evenly).
// Scope: ONE edge process. N edges behind an MX allow up to N times the limit; this is a brake on
// a single noisy client, not an accounting system. Memory is bounded: at most `maxClients` buckets,
// the least recently seen dropped first (a dropped bucket only forgets, it never refuses).

import { clientNetworkKey } from '@postern/shared';

export interface RateLimiterOptions {
  perMinute: number;
  maxTrackedClients?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class ClientRateLimiter {
  private readonly perMinute: number;
  private readonly maxTracked: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions) {
    this.perMinute = options.perMinute;
    this.maxTracked = options.maxTrackedClients ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  get trackedClients(): number {
    return this.buckets.size;
  }

  /** Takes one message from the client's allowance; false when there is none left. */
  take(remoteAddress: string): boolean {
    const clientAddress = clientNetworkKey(remoteAddress);
    const now = this.now();
    const bucket = this.buckets.get(clientAddress);
    let tokens = this.perMinute;
    if (bucket) {
      tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.updatedAt) * this.perMinute) / 60_000);
      // Map order is insertion order: re-inserting keeps the least recently seen first.
      this.buckets.delete(clientAddress);
    }
    const allowed = tokens >= 1;
    this.buckets.set(clientAddress, { tokens: allowed ? tokens - 1 : tokens, updatedAt: now });
    while (this.buckets.size > this.maxTracked) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
    }
    return allowed;
  }
}
