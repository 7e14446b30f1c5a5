import { describe, expect, it } from 'vitest';
import { ClientRateLimiter } from './rate-limiter.ts';

describe('ClientRateLimiter: messages per client IP per minute, in one process', () => {
  it('allows a burst up to the limit, then refills evenly', () => {
    let now = 0;
    const limiter = new ClientRateLimiter({ perMinute: 3, now: () => now });
    expect([1, 2, 3, 4].map(() => limiter.take('192.0.2.1'))).toEqual([true, true, true, false]);
    expect(limiter.take('192.0.2.2')).toBe(true);
    now += 20_000; // one token back
    expect(limiter.take('192.0.2.1')).toBe(true);
    expect(limiter.take('192.0.2.1')).toBe(false);
  });

  it('tracks a bounded number of clients, forgetting the least recently seen', () => {
    const limiter = new ClientRateLimiter({ perMinute: 1, maxTrackedClients: 2, now: () => 0 });
    limiter.take('a');
    limiter.take('b');
    limiter.take('c');
    expect(limiter.trackedClients).toBe(2);
    expect(limiter.take('a')).toBe(true); // forgotten, so a fresh allowance
    expect(limiter.take('c')).toBe(false);
  });

  it('keys IPv6 clients by their /64: rotating the interface identifier gives no fresh bucket', () => {
    const limiter = new ClientRateLimiter({ perMinute: 2, now: () => 0 });
    expect(limiter.take('2001:db8:1:2::1')).toBe(true);
    expect(limiter.take('2001:db8:1:2::2')).toBe(true);
    expect(limiter.take('2001:db8:1:2:dead:beef:0:3')).toBe(false);
    expect(limiter.take('2001:db8:1:3::1')).toBe(true);
  });
});
