import type { NormalizedAddress, RecipientResolution } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { LookupBatcher, MAX_LOOKUP_BATCH } from './lookup-batcher.ts';

const address = (localPart: string): NormalizedAddress => ({ localPart, domain: 'example.test', address: `${localPart}@example.test` });
const answer = (entry: NormalizedAddress): RecipientResolution =>
  entry.localPart.startsWith('no') ? { status: 'no_such_alias', domainId: 'd' } : { status: 'accepted', domainId: 'd', aliasId: entry.localPart, kind: 'forward', viaCatchAll: false, targets: [`${entry.localPart}@t.test`] };

function recorder() {
  const statements: string[][] = [];
  const resolveMany = async (addresses: readonly NormalizedAddress[]) => {
    statements.push(addresses.map((entry) => entry.localPart));
    return addresses.map(answer);
  };
  return { statements, resolveMany };
}

describe('LookupBatcher', () => {
  it('sends the lookups of one turn in one statement and answers each with its own resolution', async () => {
    const { statements, resolveMany } = recorder();
    const lookups = new LookupBatcher(resolveMany);
    const answers = await Promise.all(['a', 'no1', 'b'].map((name) => lookups.resolve(address(name))));
    expect(statements).toEqual([['a', 'no1', 'b']]);
    expect(answers.map((entry) => (entry.status === 'accepted' ? entry.aliasId : entry.status))).toEqual(['a', 'no_such_alias', 'b']);
  });

  it('looks up a later RCPT anew: nothing is answered from an earlier statement', async () => {
    const { statements, resolveMany } = recorder();
    const lookups = new LookupBatcher(resolveMany);
    await lookups.resolve(address('a'));
    await lookups.resolve(address('a'));
    expect(statements).toEqual([['a'], ['a']]);
  });

  it('fails every lookup of a failed statement, and the next turn works again', async () => {
    let fail = true;
    const lookups = new LookupBatcher(async (addresses) => {
      if (fail) throw new Error('pool gone');
      return addresses.map(answer);
    });
    const results = await Promise.allSettled([lookups.resolve(address('a')), lookups.resolve(address('b'))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    await expect(lookups.resolve(address('c'))).resolves.toMatchObject({ status: 'accepted' });
  });

  it('turns a synchronous throw or a wrong number of answers into failed lookups, never an uncaught error', async () => {
    const throwing = new LookupBatcher(() => {
      throw new Error('bug');
    });
    await expect(throwing.resolve(address('a'))).rejects.toThrow('bug');
    const short = new LookupBatcher(async () => []);
    await expect(short.resolve(address('a'))).rejects.toThrow('0 resolutions for 1 lookups');
  });

  it(`splits a turn of more than ${MAX_LOOKUP_BATCH} lookups into statements of at most that many`, async () => {
    const { statements, resolveMany } = recorder();
    const lookups = new LookupBatcher(resolveMany);
    const names = Array.from({ length: MAX_LOOKUP_BATCH + 3 }, (_, index) => `r${index}`);
    const answers = await Promise.all(names.map((name) => lookups.resolve(address(name))));
    expect(statements.map((statement) => statement.length)).toEqual([MAX_LOOKUP_BATCH, 3]);
    expect(answers.map((entry) => (entry.status === 'accepted' ? entry.aliasId : null))).toEqual(names);
  });
});
