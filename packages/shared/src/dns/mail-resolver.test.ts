// What the mail resolver keeps and for how long, against a scripted query (no DNS server): answers
// by their TTL (capped), MX/TXT and negative answers for fixed times, failures never, and one
// query for lookups that arrive together.
import { describe, expect, it } from 'vitest';
import { cacheTtlMs, createMailResolver, type DnsQuery, isDnsNoRecord, MAX_TTL_MS, NEGATIVE_TTL_MS, UNTIMED_TTL_MS } from './mail-resolver.ts';

function dnsError(code: string): Error {
  return Object.assign(new Error(`query ${code}`), { code });
}

/** A query answering from `script`, counting the queries it was asked. */
function scripted(script: (name: string, type: string) => Awaited<ReturnType<DnsQuery>> | Error) {
  const asked: string[] = [];
  const query: DnsQuery = async (name, type) => {
    asked.push(`${type} ${name}`);
    const answer = script(name, type);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { asked, resolver: createMailResolver({ servers: ['127.0.0.1:5353'], timeoutMs: 1_000, query }) };
}

describe('cacheTtlMs', () => {
  it('keeps addresses for their TTL, at most an hour; MX and TXT for a fixed time; negative answers for a minute', () => {
    expect(cacheTtlMs('A', { ttlSeconds: 300 })).toBe(300_000);
    expect(cacheTtlMs('AAAA', { ttlSeconds: 86_400 })).toBe(MAX_TTL_MS);
    expect(cacheTtlMs('A', { ttlSeconds: 0 })).toBe(0);
    expect(cacheTtlMs('MX', { ttlSeconds: null })).toBe(UNTIMED_TTL_MS);
    expect(cacheTtlMs('TXT', { ttlSeconds: null })).toBe(UNTIMED_TTL_MS);
    expect(cacheTtlMs('MX', 'none')).toBe(NEGATIVE_TTL_MS);
    expect(MAX_TTL_MS).toBe(3_600_000);
  });
});

describe('createMailResolver', () => {
  it('answers a second lookup from the cache, by name case-insensitively', async () => {
    const { asked, resolver } = scripted(() => ({ records: [{ exchange: 'mx.example.test', priority: 10 }], ttlSeconds: null }));
    expect(await resolver.resolve('Example.TEST', 'MX')).toEqual([{ exchange: 'mx.example.test', priority: 10 }]);
    expect(await resolver.resolve('example.test.', 'MX')).toEqual([{ exchange: 'mx.example.test', priority: 10 }]);
    expect(asked).toEqual(['MX example.test']);
  });

  it('does not keep an answer whose TTL is 0', async () => {
    const { asked, resolver } = scripted(() => ({ records: ['192.0.2.25'], ttlSeconds: 0 }));
    await resolver.resolve('mx.example.test', 'A');
    await new Promise((resolve) => setTimeout(resolve, 5));
    await resolver.resolve('mx.example.test', 'A');
    expect(asked).toHaveLength(2);
  });

  it('keeps NXDOMAIN and NODATA as answers, rethrown with their code', async () => {
    const { asked, resolver } = scripted((name) => dnsError(name.startsWith('nx') ? 'ENOTFOUND' : 'ENODATA'));
    for (let i = 0; i < 2; i += 1) {
      await expect(resolver.resolve('nx.example.test', 'MX')).rejects.toMatchObject({ code: 'ENOTFOUND' });
      await expect(resolver.resolve('bare.example.test', 'AAAA')).rejects.toMatchObject({ code: 'ENODATA' });
    }
    expect(asked).toEqual(['MX nx.example.test', 'AAAA bare.example.test']);
    expect(isDnsNoRecord(dnsError('ENOTFOUND'))).toBe(true);
    expect(isDnsNoRecord(dnsError('ENODATA'))).toBe(true);
  });

  it('never keeps a failure: a timeout or SERVFAIL is asked again', async () => {
    let failing = true;
    const { asked, resolver } = scripted(() => (failing ? dnsError('ETIMEOUT') : { records: ['192.0.2.25'], ttlSeconds: 60 }));
    await expect(resolver.resolve('mx.example.test', 'A')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    failing = false;
    expect(await resolver.resolve('mx.example.test', 'A')).toEqual(['192.0.2.25']);
    expect(asked).toHaveLength(2);
    expect(isDnsNoRecord(dnsError('ETIMEOUT'))).toBe(false);
    expect(isDnsNoRecord(dnsError('ESERVFAIL'))).toBe(false);
  });

  it('asks once for lookups of one name and type that arrive together', async () => {
    const { asked, resolver } = scripted(() => ({ records: [['v=spf1 -all']], ttlSeconds: null }));
    const answers = await Promise.all([1, 2, 3].map(() => resolver.resolve('example.test', 'TXT')));
    expect(answers).toEqual([[['v=spf1 -all']], [['v=spf1 -all']], [['v=spf1 -all']]]);
    expect(asked).toEqual(['TXT example.test']);
  });

  it('names the servers it asks', () => {
    expect(createMailResolver({ servers: ['192.0.2.53', '[2001:db8::53]:5353'], timeoutMs: 1_000 }).servers).toEqual(['192.0.2.53', '[2001:db8::53]:5353']);
  });
});
