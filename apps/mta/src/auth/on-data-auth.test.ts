// Inbound authentication inside the DATA hook (hook-session.testkit.ts, no socket), with mailauth
// against a scripted zone: the header on top of the stored message and the verdicts with it, the
// enforce refusals (550 5.7.1 certain, 451 4.7.0 unsure) with nothing stored, and off storing none.
import { createLogger, prometheus } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { FakeSession, fakeEdge } from '../smtp/hook-session.testkit.ts';
import { plainMessage, signed, testKey, type Zone, zoneResolver } from './auth.testkit.ts';
import { createInboundAuthMetrics } from './auth-metrics.ts';
import type { InboundAuthPolicy } from './decision.ts';
import { createInboundAuth } from './inbound-auth.ts';

const CLIENT = '192.0.2.10';

async function edgeWith(policy: InboundAuthPolicy, zone: Zone) {
  const { resolver } = zoneResolver(zone);
  const evaluate = createInboundAuth({
    resolver,
    hostname: 'mx.postern.test',
    timeoutMs: 5_000,
    metrics: createInboundAuthMetrics(new prometheus.Registry()),
    logger: createLogger('auth-unit', 'silent'),
  });
  const edge = fakeEdge({ inboundAuth: { policy, evaluate } });
  const session = new FakeSession(edge, { remoteAddress: CLIENT, helo: 'mail.sender.test' });
  await session.connect();
  expect(await session.mailFrom('ann@sender.test')).toBe('250');
  expect(await session.rcptTo('desk@postern.test')).toBe('250');
  return { edge, session };
}

async function senderZone(): Promise<{ zone: Zone; message: Buffer }> {
  const key = await testKey('sender.test');
  const zone: Zone = { 'sender.test': [`v=spf1 ip4:${CLIENT} -all`], [key.record.name]: [key.record.value], '_dmarc.sender.test': ['v=DMARC1; p=reject'] };
  return { zone, message: await signed(plainMessage('Ann <ann@sender.test>'), key) };
}

describe('onData with inbound authentication', () => {
  it('annotate: Authentication-Results on top of Received:, the message bytes after them unchanged, the verdicts stored', async () => {
    const { zone, message } = await senderZone();
    const { edge, session } = await edgeWith('annotate', zone);
    expect(await session.data(message)).toMatch(/^250 2\.0\.0 queued as /);
    const stored = edge.accepted[0];
    const raw = stored?.raw.toString('utf8') ?? '';
    expect(raw).toMatch(/^Authentication-Results: mx\.postern\.test;\r\n\tdkim=pass [^\r\n]*;\r\n\tspf=pass [^\r\n]*;\r\n\tdmarc=pass [^\r\n]*\r\nReceived: from mail\.sender\.test /);
    expect(stored?.raw.subarray(stored.raw.length - message.length).equals(message)).toBe(true);
    expect(stored?.authResults).toMatch(/^mx\.postern\.test;\r\n\tdkim=pass/);
    expect(stored?.authVerdicts).toMatchObject({ spf: 'pass', dkim: [{ result: 'pass' }], dmarc: 'pass', dmarcPolicy: 'reject' });
  });

  it('enforce: a certain DMARC failure of a p=reject domain is refused 550 5.7.1, nothing stored; annotate stores it with dmarc=fail', async () => {
    const { zone } = await senderZone();
    const forged = plainMessage('Ann <ann@sender.test>');
    const refused = await edgeWith('enforce', { ...zone, 'sender.test': ['v=spf1 -all'] });
    expect(await refused.session.data(forged)).toMatch(/^550 5\.7\.1 Message refused: it fails the DMARC policy \(p=reject\) of sender\.test/);
    expect(refused.edge.accepted).toEqual([]);
    expect(await refused.edge.metric('mail_mta_rejections_total')).toEqual(['stage=data,reason=dmarc_reject 1']);

    const annotated = await edgeWith('annotate', { ...zone, 'sender.test': ['v=spf1 -all'] });
    expect(await annotated.session.data(forged)).toMatch(/^250 /);
    expect(annotated.edge.accepted[0]?.authResults).toMatch(/\tdmarc=fail /);
  });

  it('enforce: a DNS failure that leaves the verdict unsure is 451 4.7.0, never 5xx; annotate records temperror', async () => {
    const { zone, message } = await senderZone();
    const broken: Zone = { ...zone, '_dmarc.sender.test': 'SERVFAIL' };
    const deferred = await edgeWith('enforce', broken);
    expect(await deferred.session.data(message)).toBe('451 4.7.0 Temporary failure checking the sender (SPF/DKIM/DMARC), try again later');
    expect(deferred.edge.accepted).toEqual([]);

    const annotated = await edgeWith('annotate', broken);
    expect(await annotated.session.data(message)).toMatch(/^250 /);
    expect(annotated.edge.accepted[0]?.authResults).toMatch(/\tdmarc=temperror/);
  });

  it('off (no step): no header, nothing recorded', async () => {
    const edge = fakeEdge();
    const session = new FakeSession(edge);
    await session.connect();
    await session.mailFrom('ann@sender.test');
    await session.rcptTo('desk@postern.test');
    expect(await session.data(plainMessage('ann@sender.test'))).toMatch(/^250 /);
    expect(edge.accepted[0]?.raw.toString('utf8')).toMatch(/^Received: /);
    expect(edge.accepted[0]).toMatchObject({ authResults: null, authVerdicts: null });
  });
});
