import { describe, expect, it } from 'vitest';
import { GreetingDelay } from './greeting-delay.ts';

const DAY = 24 * 3_600_000;

describe('GreetingDelay: the early-talker wait, paid once per client network', () => {
  it('waits for a new client, not for one that passed, and again once the pass is a day old', () => {
    let now = 0;
    const greeting = new GreetingDelay({ delayMs: 300, now: () => now });
    expect(greeting.delayFor('192.0.2.1')).toBe(300);
    greeting.pass('192.0.2.1');
    expect(greeting.delayFor('192.0.2.1')).toBe(0);
    expect(greeting.delayFor('192.0.2.2')).toBe(300);
    now += DAY - 1;
    // Passing again while remembered does not extend the pass.
    greeting.pass('192.0.2.1');
    expect(greeting.delayFor('192.0.2.1')).toBe(0);
    now += 1;
    expect(greeting.delayFor('192.0.2.1')).toBe(300);
    expect(greeting.rememberedClients).toBe(0);
  });

  it('with no delay configured, greets everyone at once and remembers nobody', () => {
    const greeting = new GreetingDelay({ delayMs: 0 });
    greeting.pass('192.0.2.1');
    expect(greeting.delayFor('192.0.2.9')).toBe(0);
    expect(greeting.rememberedClients).toBe(0);
  });

  it('remembers a bounded number of clients, forgetting the oldest pass first', () => {
    const greeting = new GreetingDelay({ delayMs: 100, maxClients: 2, now: () => 0 });
    greeting.pass('a');
    greeting.pass('b');
    greeting.pass('c');
    expect(greeting.rememberedClients).toBe(2);
    expect(['a', 'b', 'c'].map((client) => greeting.delayFor(client))).toEqual([100, 0, 0]);
  });

  it('keys IPv6 clients by their /64, like the rate limit', () => {
    const greeting = new GreetingDelay({ delayMs: 100 });
    greeting.pass('2001:db8:1:2::1');
    expect(greeting.delayFor('2001:db8:1:2:dead:beef:0:3')).toBe(0);
    expect(greeting.delayFor('2001:db8:1:3::1')).toBe(100);
  });
});
