// mailauth's verdicts through the edge's resolver mapping, deadline and header: SPF, DKIM, DMARC and
// ARC each passing and failing against a scripted zone; a DNS failure or a silent server giving
// temperror (never fail); hostile signatures recorded, not thrown.
import { createLogger, prometheus } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { arcSealed, chunked, plainMessage, signed, testKey, type Zone, zoneResolver } from './auth.testkit.ts';
import { createInboundAuthMetrics } from './auth-metrics.ts';
import { decide } from './decision.ts';
import { createInboundAuth, type SessionFacts } from './inbound-auth.ts';

const SENDER_IP = '192.0.2.10';
const session: SessionFacts = { clientAddress: SENDER_IP, helo: 'mail.sender.test', envelopeFrom: 'ann@sender.test' };

function evaluator(zone: Zone, timeoutMs = 5_000) {
  const registry = new prometheus.Registry();
  const { resolver, asked } = zoneResolver(zone);
  const evaluate = createInboundAuth({
    resolver,
    hostname: 'mx.postern.test',
    timeoutMs,
    metrics: createInboundAuthMetrics(registry),
    logger: createLogger('auth-unit', 'silent'),
  });
  const metric = async (name: string) =>
    ((await registry.getSingleMetric(name)?.get())?.values ?? []).map((value) => `${Object.values(value.labels).join(',')} ${value.value}`);
  return { evaluate, asked, metric };
}

async function senderZone(dmarc = 'v=DMARC1; p=reject') {
  const key = await testKey('sender.test');
  const zone: Zone = {
    'sender.test': [`v=spf1 ip4:${SENDER_IP} -all`],
    [key.record.name]: [key.record.value],
    '_dmarc.sender.test': [dmarc],
  };
  return { key, zone };
}

describe('inbound authentication', () => {
  it('SPF, DKIM and DMARC pass: one header naming the edge, verdicts by method, counted', async () => {
    const { key, zone } = await senderZone();
    const { evaluate, metric } = evaluator(zone);
    const result = await evaluate(chunked(await signed(plainMessage('Ann <ann@sender.test>'), key)), session);
    expect(result.verdicts).toMatchObject({ spf: 'pass', dkim: [{ result: 'pass', domain: 'sender.test' }], dmarc: 'pass', dmarcPolicy: 'reject', arc: 'none' });
    expect(result.verdicts.incomplete).toBeUndefined();
    expect(result.header).toMatch(/^Authentication-Results: mx\.postern\.test;\r\n\t/);
    expect(result.header).toMatch(/\tdkim=pass header\.i=@sender\.test header\.s=s1 /);
    expect(result.header).toMatch(/\tspf=pass [^\r\n]*smtp\.mailfrom=ann@sender\.test/);
    expect(result.header).toMatch(/\tdmarc=pass [^\r\n]*header\.from=sender\.test/);
    expect(result.header.endsWith('\r\n')).toBe(true);
    expect(result.header.slice(0, -2)).not.toMatch(/\r\n(?![\t])/);
    expect(result.value).toBe(result.header.slice('Authentication-Results: '.length, -2));
    expect(await metric('mail_mta_inbound_auth_results_total')).toEqual(expect.arrayContaining(['spf,pass 1', 'dkim,pass 1', 'dmarc,pass 1', 'arc,none 1']));
    expect(decide('enforce', result.verdicts)).toBe('accept');
  });

  it('a client outside the SPF record and a tampered body: spf=fail, dkim=fail, dmarc=fail under p=reject (enforce refuses)', async () => {
    const { key, zone } = await senderZone();
    const { evaluate } = evaluator(zone);
    const message = await signed(plainMessage('ann@sender.test', 'Pay invoice 1.\r\n'), key);
    const tampered = Buffer.from(message.toString('latin1').replace('invoice 1', 'invoice 9'), 'latin1');
    const result = await evaluate(chunked(tampered), { ...session, clientAddress: '198.51.100.7' });
    expect(result.verdicts).toMatchObject({ spf: 'fail', dkim: [{ result: 'fail' }], dmarc: 'fail', dmarcPolicy: 'reject', dmarcDomain: 'sender.test' });
    expect(result.header).toMatch(/dkim=fail/);
    expect(decide('enforce', result.verdicts)).toBe('reject');
    expect(decide('annotate', result.verdicts)).toBe('accept');
  });

  it('p=none and t=y are not refused by enforce', async () => {
    for (const record of ['v=DMARC1; p=none', 'v=DMARC1; p=reject; t=y']) {
      const { zone } = await senderZone(record);
      const { evaluate } = evaluator(zone);
      const result = await evaluate([plainMessage('ann@sender.test')], { ...session, clientAddress: '198.51.100.7' });
      expect(result.verdicts.dmarc).toBe('fail');
      expect(decide('enforce', result.verdicts)).toBe('accept');
    }
  });

  it('SERVFAIL for the DKIM key and the SPF record: temperror, not fail; enforce defers a p=reject failure', async () => {
    const { key, zone } = await senderZone();
    const { evaluate } = evaluator({ ...zone, [key.record.name]: 'SERVFAIL', 'sender.test': 'SERVFAIL' });
    const result = await evaluate([await signed(plainMessage('ann@sender.test'), key)], session);
    expect(result.verdicts).toMatchObject({ spf: 'temperror', dkim: [{ result: 'temperror' }], dmarcPolicy: 'reject' });
    // mailauth itself calls this DMARC "fail": the passes it could not see make it unsure.
    expect(['fail', 'temperror']).toContain(result.verdicts.dmarc);
    expect(decide('enforce', result.verdicts)).toBe('defer');
  });

  it('SERVFAIL for the DMARC record: dmarc=temperror, deferred by enforce', async () => {
    const { zone } = await senderZone();
    const { evaluate } = evaluator({ ...zone, '_dmarc.sender.test': 'SERVFAIL' });
    const result = await evaluate([plainMessage('ann@sender.test')], { ...session, clientAddress: '198.51.100.7' });
    expect(result.verdicts).toMatchObject({ spf: 'fail', dmarc: 'temperror', dmarcPolicy: null });
    expect(decide('enforce', result.verdicts)).toBe('defer');
  });

  it('a server that never answers: the deadline ends the evaluation with temperror for what was not known', async () => {
    const { key, zone } = await senderZone();
    const { evaluate, metric } = evaluator({ ...zone, '_dmarc.sender.test': 'HANG' }, 300);
    const result = await evaluate([await signed(plainMessage('ann@sender.test'), key)], session);
    expect(result.verdicts).toMatchObject({ spf: 'pass', dkim: [{ result: 'pass' }], dmarc: 'temperror', incomplete: 'deadline' });
    expect(decide('enforce', result.verdicts)).toBe('defer');
    expect(await metric('mail_mta_inbound_auth_duration_ms')).toEqual(expect.arrayContaining([expect.stringMatching(/^deadline /)]));
  });

  it('a valid ARC set from a forwarder: arc=pass', async () => {
    const { key, zone } = await senderZone();
    const forwarderKey = await testKey('forwarder.test', 'arc');
    const full: Zone = { ...zone, [forwarderKey.record.name]: [forwarderKey.record.value], 'forwarder.test': [`v=spf1 ip4:203.0.113.5 -all`] };
    const { resolver } = zoneResolver(full);
    const sealed = await arcSealed(await signed(plainMessage('ann@sender.test'), key), forwarderKey, resolver, { ip: SENDER_IP, helo: 'mail.sender.test', sender: 'ann@sender.test' });
    const { evaluate } = evaluator(full);
    const result = await evaluate(chunked(sealed), { clientAddress: '203.0.113.5', helo: 'mx.forwarder.test', envelopeFrom: 'fwd@forwarder.test' });
    expect(result.verdicts).toMatchObject({ arc: 'pass', spf: 'pass' });
    expect(result.header).toMatch(/\tarc=pass/);
  });

  it('an ARC set whose sealer\'s key cannot be looked up: arc=temperror, not the arc=fail mailauth reports', async () => {
    const { key, zone } = await senderZone();
    const forwarderKey = await testKey('forwarder.test', 'arc');
    const full: Zone = { ...zone, [forwarderKey.record.name]: [forwarderKey.record.value] };
    const sealed = await arcSealed(await signed(plainMessage('ann@sender.test'), key), forwarderKey, zoneResolver(full).resolver, {
      ip: SENDER_IP,
      helo: 'mail.sender.test',
      sender: 'ann@sender.test',
    });
    const { evaluate } = evaluator({ ...full, [forwarderKey.record.name]: 'SERVFAIL' });
    const result = await evaluate([sealed], session);
    expect(result.verdicts).toMatchObject({ arc: 'temperror', dkim: [{ result: 'pass' }] });
    expect(result.header).toMatch(/\tarc=temperror \(DNS failure\)/);
  });

  it('hostile DKIM-Signature fields (NUL, invalid UTF-8, CR/LF in the From domain, a 60 KB tag) are evaluated, never thrown, and cannot break the header', async () => {
    const { zone } = await senderZone();
    const { evaluate } = evaluator(zone);
    const hostile = Buffer.concat([
      Buffer.from('DKIM-Signature: v=1; a=rsa-sha256; d=sen\u0000der.test; s=s1\u0000; h=from; bh=AAAA; b=AAAA\r\n'),
      Buffer.from('DKIM-Signature: v=1; a=rsa-sha256; d='),
      Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
      Buffer.from(`.test; s=${'x'.repeat(60_000)}; h=from; bh=AAAA; b=AAAA\r\n`),
      Buffer.from('DKIM-Signature: v=1; a=rsa-sha256; d=evil.test\r\n\tAuthentication-Results: forged; s=s1; h=from; bh=AAAA; b=AAAA\r\n'),
      plainMessage('ann@sender.test'),
    ]);
    const result = await evaluate(chunked(hostile, 1024), session);
    expect(result.verdicts.incomplete).toBeUndefined();
    expect(result.verdicts.dkim.length).toBeGreaterThanOrEqual(1);
    for (const line of result.header.slice(0, -2).split('\r\n').slice(1)) {
      expect(line.startsWith('\t')).toBe(true);
      expect(line.length).toBeLessThan(998);
    }
    expect(result.header).not.toMatch(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/);
    expect(result.value).not.toMatch(/\u0000/);
    expect(JSON.stringify(result.verdicts)).not.toMatch(/\\u0000/);
  });
});
