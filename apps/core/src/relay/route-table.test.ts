import type { RouteRule } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { createRouteTable, ROUTE_CACHE_MS } from './route-table.ts';

const relayA: RouteRule = { domain: 'example.com', relay: { kind: 'host', host: 'a.example.net', port: 25 }, tls: 'opportunistic' };
const relayB: RouteRule = { domain: 'example.com', relay: { kind: 'host', host: 'b.example.net', port: 25 }, tls: 'opportunistic' };

function table(initial: RouteRule | null | Error) {
  let clock = 0;
  let current: RouteRule | null | Error = initial;
  const loads: string[] = [];
  const routes = createRouteTable({
    now: () => clock,
    load: async (domain) => {
      loads.push(domain);
      if (current instanceof Error) throw current;
      return current;
    },
  });
  return {
    routes,
    loads,
    advance: (ms: number) => {
      clock += ms;
    },
    set: (rule: RouteRule | null | Error) => {
      current = rule;
    },
  };
}

describe('the route table cache', () => {
  it('keeps a domain\'s route for less than ROUTE_CACHE_MS, then reads the changed route', async () => {
    const t = table(relayA);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
    t.set(relayB);
    t.advance(ROUTE_CACHE_MS - 1);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
    t.advance(1);
    expect(await t.routes.lookup('example.com')).toBe(relayB);
    expect(t.loads).toEqual(['example.com', 'example.com']);
  });

  it('a deleted route is gone as fast: null is cached no longer than a route', async () => {
    const t = table(relayA);
    await t.routes.lookup('example.com');
    t.set(null);
    t.advance(ROUTE_CACHE_MS);
    expect(await t.routes.lookup('example.com')).toBeNull();
  });

  it('concurrent sends to one domain share one lookup; other domains have their own', async () => {
    const t = table(null);
    await Promise.all([t.routes.lookup('example.com'), t.routes.lookup('example.com'), t.routes.lookup('other.test')]);
    expect(t.loads).toEqual(['example.com', 'other.test']);
  });

  it('a failed lookup fails the send and is not remembered: the next send asks again', async () => {
    const t = table(new Error('connection terminated'));
    await expect(t.routes.lookup('example.com')).rejects.toThrow('connection terminated');
    t.set(relayA);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
  });

  it('a failed lookup of a domain read before answers with its last route, and asks again next time', async () => {
    const t = table(relayA);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
    t.set(new Error('connection terminated'));
    t.advance(ROUTE_CACHE_MS);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
    expect(await t.routes.lookup('example.com')).toBe(relayA);
    expect(t.loads).toEqual(['example.com', 'example.com', 'example.com']);
    await expect(t.routes.lookup('other.test')).rejects.toThrow('connection terminated');
    t.set(relayB);
    expect(await t.routes.lookup('example.com')).toBe(relayB);
  });

  it('maxAgeMs 0 reads the table on every send', async () => {
    const loads: string[] = [];
    const routes = createRouteTable({
      maxAgeMs: 0,
      now: () => 0,
      load: async (domain) => {
        loads.push(domain);
        return null;
      },
    });
    await routes.lookup('example.com');
    await routes.lookup('example.com');
    expect(loads).toHaveLength(2);
  });
});
