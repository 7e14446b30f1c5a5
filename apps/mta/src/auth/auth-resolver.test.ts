// The resolver mailauth is given: answers and "no record" pass through as they are; everything that
// is not an answer reaches mailauth with a code it reads as temperror, never as ENOTFOUND/ENODATA.
import { describe, expect, it } from 'vitest';
import { zoneResolver } from './auth.testkit.ts';
import { evaluationResolver } from './auth-resolver.ts';

function resolverFor(zone: Parameters<typeof zoneResolver>[0]) {
  const deadline = new AbortController();
  return { deadline, auth: evaluationResolver(zoneResolver(zone).resolver, deadline.signal) };
}

describe('evaluationResolver', () => {
  it('answers, and "no such name" / "no record" as Node codes them, are passed through and not counted as failures', async () => {
    const { auth } = resolverFor({ 'a.test': ['v=spf1 -all'] });
    expect(await auth.resolve('a.test', 'TXT')).toEqual([['v=spf1 -all']]);
    await expect(auth.resolve('missing.test', 'TXT')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(auth.temporaryFailures).toBe(0);
  });

  it('a failure without an answer keeps its code; a type the mail resolver does not ask for and a codeless rejection get one of a temporary failure', async () => {
    const { auth } = resolverFor({ 'broken.test': 'SERVFAIL' });
    await expect(auth.resolve('broken.test', 'TXT')).rejects.toMatchObject({ code: 'ESERVFAIL' });
    await expect(auth.resolve('a.test', 'SPF')).rejects.toMatchObject({ code: 'ENOTIMP' });
    expect(auth.temporaryFailures).toBe(2);
  });

  it('once the deadline passes, the lookups under way and every later one fail at once with ETIMEOUT', async () => {
    const { auth, deadline } = resolverFor({ 'silent.test': 'HANG' });
    const pending = auth.resolve('silent.test', 'TXT');
    deadline.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ETIMEOUT' });
    await expect(auth.resolve('a.test', 'TXT')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    expect(auth.temporaryFailures).toBe(2);
  });
});
