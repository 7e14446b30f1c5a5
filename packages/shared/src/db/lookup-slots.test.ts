import { describe, expect, it } from 'vitest';
import { LookupSlots } from './lookup-slots.ts';

describe('LookupSlots', () => {
  it('lets one client run at most N lookups; others are not affected', async () => {
    const slots = new LookupSlots(2);
    const a1 = await slots.acquire('a', 1_000);
    const a2 = await slots.acquire('a', 1_000);
    expect(a1).not.toBeNull();
    expect(a2).not.toBeNull();
    expect(await slots.acquire('a', 10)).toBeNull();
    const b = await slots.acquire('b', 10);
    expect(b).not.toBeNull();
    b?.();
    expect(slots.trackedClients).toBe(1);
  });

  it('hands a freed slot to a waiter of the same client, and forgets a client with nothing running', async () => {
    const slots = new LookupSlots(1);
    const first = await slots.acquire('a', 1_000);
    const waiting = slots.acquire('a', 1_000);
    first?.();
    first?.(); // a second release of the same slot changes nothing
    const second = await waiting;
    expect(second).not.toBeNull();
    expect(await slots.acquire('a', 10)).toBeNull();
    second?.();
    expect(slots.trackedClients).toBe(0);
  });

  it('gives the place of a caller whose client went away to the next one, and takes no slot for an aborted caller', async () => {
    const slots = new LookupSlots(1);
    const first = await slots.acquire('a', 1_000);
    const gone = new AbortController();
    const abandoned = slots.acquire('a', 60_000, gone.signal);
    const next = slots.acquire('a', 60_000);
    gone.abort();
    // At once, not after its wait ran out.
    expect(await Promise.race([abandoned, new Promise((resolve) => setTimeout(() => resolve('still waiting'), 200))])).toBeNull();
    first?.();
    const granted = await next;
    expect(granted).not.toBeNull();
    granted?.();
    expect(slots.trackedClients).toBe(0);
    expect(await slots.acquire('a', 1_000, gone.signal)).toBeNull();
    expect(slots.trackedClients).toBe(0);
  });
});
