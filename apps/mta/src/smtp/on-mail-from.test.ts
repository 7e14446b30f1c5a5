// MAIL FROM through the hook, without a socket (hook-session.testkit.ts): every reply it chooses.
import { describe, expect, it } from 'vitest';
import { FakeSession, fakeEdge, TEST_LIMITS } from './hook-session.testkit.ts';

async function mailFrom(edge: ReturnType<typeof fakeEdge>, address: string, args: Record<string, string | true> = {}) {
  const client = new FakeSession(edge);
  await client.connect();
  return client.mailFrom(address, args);
}

describe('onMailFrom', () => {
  it('250 for an ordinary sender, the null reverse-path, and a non-ASCII local part under SMTPUTF8', async () => {
    const edge = fakeEdge();
    expect(await mailFrom(edge, 'sender@outside.test')).toBe('250');
    expect(await mailFrom(edge, '')).toBe('250');
    expect(await mailFrom(edge, 'jürgen@outside.test', { SMTPUTF8: true })).toBe('250');
    expect(await mailFrom(edge, 'sender@outside.test', { SIZE: String(TEST_LIMITS.maxMessageSize) })).toBe('250');
  });

  it('421 4.3.2 while the edge stops', async () => {
    const edge = fakeEdge();
    const client = new FakeSession(edge);
    await client.connect();
    edge.stop();
    expect(await client.mailFrom('sender@outside.test')).toBe('421 4.3.2 Service shutting down, try again later');
  });

  it('501 5.1.7 for a reverse-path no column can hold', async () => {
    const edge = fakeEdge();
    expect(await mailFrom(edge, 'nul\u0000@outside.test')).toMatch(/^501 5\.1\.7 Bad sender address syntax: /);
    expect(await mailFrom(edge, `${'x'.repeat(320)}@outside.test`)).toMatch(/^501 5\.1\.7 /);
  });

  it('553 5.6.7 for a non-ASCII local part without SMTPUTF8', async () => {
    expect(await mailFrom(fakeEdge(), 'jürgen@outside.test')).toBe('553 5.6.7 <jürgen@outside.test>: non-ASCII address without SMTPUTF8');
  });

  it('552 5.3.4 for a declared SIZE over the maximum, 452 4.3.1 for one over what the memory budget has left', async () => {
    expect(await mailFrom(fakeEdge(), 'sender@outside.test', { SIZE: String(TEST_LIMITS.maxMessageSize + 1) })).toBe(
      `552 5.3.4 Message exceeds the maximum size of ${TEST_LIMITS.maxMessageSize} bytes`,
    );
    const edge = fakeEdge({ dataMemoryBudget: 1_000 });
    expect(await mailFrom(edge, 'sender@outside.test', { SIZE: '1001' })).toBe('452 4.3.1 Insufficient system storage');
    expect(await mailFrom(edge, 'sender@outside.test', { SIZE: '1000' })).toBe('250');
  });

  it('451 4.7.1 past the client network rate, counted per transaction; another client is not affected', async () => {
    const edge = fakeEdge({ limits: { rateLimitPerMinute: 2 } });
    const client = new FakeSession(edge, { remoteAddress: '2001:db8:1:2::10' });
    await client.connect();
    expect(await client.mailFrom('a@outside.test')).toBe('250');
    // Another address of the same IPv6 /64 draws from the same bucket.
    const neighbour = new FakeSession(edge, { remoteAddress: '2001:db8:1:2::99' });
    expect(await neighbour.mailFrom('a@outside.test')).toBe('250');
    expect(await client.mailFrom('a@outside.test')).toBe('451 4.7.1 Too many messages from your address (limit 2/min), try again later');
    expect(await new FakeSession(edge, { remoteAddress: '192.0.2.77' }).mailFrom('a@outside.test')).toBe('250');
    expect(await edge.metric('mail_mta_rejections_total')).toEqual(['stage=mail,reason=rate_limited 1']);
  });

  it('451 4.3.0, never a 5xx, when a check throws unexpectedly', async () => {
    const edge = fakeEdge();
    edge.context.rateLimiter.take = () => {
      throw new Error('bug');
    };
    expect(await mailFrom(edge, 'sender@outside.test')).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
  });
});
