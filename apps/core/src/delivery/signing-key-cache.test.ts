import type { SigningKey } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { SigningKeyCache } from './signing-key-cache.ts';

const key = (selector: string): SigningKey => ({ domain: 'example.test', selector, keyType: 'ed25519', privateKeyPem: `pem-${selector}` });

function countingLookup(answer: () => SigningKey | null) {
  const calls: string[] = [];
  return {
    calls,
    read: async (domain: string) => {
      calls.push(domain);
      return answer();
    },
  };
}

describe('the DKIM keys an engine keeps between claims', () => {
  it('reads a domain once while the keys counter stays the same', async () => {
    const cache = new SigningKeyCache();
    const lookup = countingLookup(() => key('s1'));
    const keyFor = cache.cached(lookup.read);
    cache.observe('7');
    for (let i = 0; i < 5; i += 1) expect(await keyFor('example.test')).toEqual(key('s1'));
    cache.observe('7');
    await keyFor('example.test');
    expect(lookup.calls).toEqual(['example.test']);
  });

  it('keeps "no key" too, and forgets everything when a claim shows the counter moved (a rotation)', async () => {
    const cache = new SigningKeyCache();
    let current: SigningKey | null = null;
    const lookup = countingLookup(() => current);
    const keyFor = cache.cached(lookup.read);
    cache.observe('1');
    expect(await keyFor('example.test')).toBeNull();
    expect(await keyFor('example.test')).toBeNull();
    current = key('s2');
    // Committed, but no claim has seen it yet: the delivery claimed before it may still go unsigned.
    expect(await keyFor('example.test')).toBeNull();
    cache.observe('2');
    expect(await keyFor('example.test')).toEqual(key('s2'));
    expect(lookup.calls).toHaveLength(2);
  });

  it('does not keep an answer read before the counter moved and returned after it', async () => {
    const cache = new SigningKeyCache();
    let release: (value: SigningKey | null) => void = () => {};
    const slow = new Promise<SigningKey | null>((resolve) => {
      release = resolve;
    });
    let reads = 0;
    const keyFor = cache.cached(async () => {
      reads += 1;
      return reads === 1 ? slow : key('new');
    });
    cache.observe('1');
    const first = keyFor('example.test');
    cache.observe('2');
    release(key('old'));
    expect(await first).toEqual(key('old'));
    expect(await keyFor('example.test')).toEqual(key('new'));
    expect(reads).toBe(2);
  });

  it('keeps nothing before the first claim, and nothing that failed', async () => {
    const cache = new SigningKeyCache();
    let reads = 0;
    let fail = false;
    const keyFor = cache.cached(async () => {
      reads += 1;
      if (fail) throw new Error('connection terminated');
      return key('s1');
    });
    await keyFor('example.test');
    await keyFor('example.test');
    expect(reads).toBe(2);
    cache.observe('1');
    fail = true;
    await expect(keyFor('example.test')).rejects.toThrow('connection terminated');
    fail = false;
    await keyFor('example.test');
    await keyFor('example.test');
    expect(reads).toBe(4);
  });
});
