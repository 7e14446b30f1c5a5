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

  it('with a cap in all, hands freed slots to the waiting clients in turn, the callers of each in order', async () => {
    const slots = new LookupSlots(2, 2);
    const held = [await slots.acquire('flood', 1_000), await slots.acquire('flood', 1_000)];
    const granted: string[] = [];
    const wait = (key: string, name: string) =>
      slots.acquire(key, 5_000).then((release) => {
        granted.push(name);
        return release;
      });
    // The flood queued five callers before anyone else came.
    const waiting = [1, 2, 3, 4, 5].map((n) => wait('flood', `flood ${n}`));
    const other = wait('other', 'other');
    const third = wait('third', 'third');
    expect(await slots.acquire('late', 10)).toBeNull(); // every slot is taken: no one jumps the turns
    held[0]?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(granted).toEqual(['flood 1']);
    held[1]?.();
    (await waiting[0])?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(granted).toEqual(['flood 1', 'other', 'third']);
    (await other)?.();
    (await third)?.();
    for (const next of waiting.slice(1)) (await next)?.();
    expect(granted).toEqual(['flood 1', 'other', 'third', 'flood 2', 'flood 3', 'flood 4', 'flood 5']);
    expect(slots.trackedClients).toBe(0);
  });

  it('with a cap in all, keeps each client within its own cap too', async () => {
    const slots = new LookupSlots(1, 3);
    const a = await slots.acquire('a', 1_000);
    expect(await slots.acquire('a', 10)).toBeNull();
    const b = await slots.acquire('b', 1_000);
    const c = await slots.acquire('c', 1_000);
    expect(await slots.acquire('d', 10)).toBeNull();
    for (const release of [a, b, c]) release?.();
    expect(slots.trackedClients).toBe(0);
  });
});
