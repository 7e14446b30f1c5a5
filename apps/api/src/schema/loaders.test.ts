import { describe, expect, it } from 'vitest';
import { createLoaders } from './loaders.ts';

/** A database that answers every statement with `rows` and records what it was asked. */
function fakeDb(rows: Array<Record<string, unknown>>) {
  const calls: unknown[][] = [];
  return {
    calls,
    db: {
      query: async (_text: string, values: unknown[]) => {
        calls.push(values);
        return { rows };
      },
    } as never,
  };
}

describe('request loaders', () => {
  it('answer the loads of one tick with one statement, in the order asked, empty where nothing matched', async () => {
    const { db, calls } = fakeDb([
      { id: '2', deliveryId: 'b', attemptNumber: 1 },
      { id: '1', deliveryId: 'a', attemptNumber: 1 },
      { id: '3', deliveryId: 'a', attemptNumber: 2 },
    ]);
    const loaders = createLoaders(db);
    const [a, none, b] = await Promise.all(['a', 'c', 'b'].map((id) => loaders.attemptsOfDelivery.load(id)));
    expect(calls).toEqual([[['a', 'c', 'b'], null]]);
    expect(a?.map((row) => row.id)).toEqual(['1', '3']);
    expect(none).toEqual([]);
    expect(b?.map((row) => row.id)).toEqual(['2']);
  });

  it('keep nothing between ticks: a later load reads the row as it is then', async () => {
    const { db, calls } = fakeDb([{ id: '7', deliveryId: 'a', reason: 'x' }]);
    const loaders = createLoaders(db);
    expect((await loaders.deadLetterOfDelivery.load('a'))?.id).toBe('7');
    expect(await loaders.deadLetterOfDelivery.load('z')).toBeNull();
    await loaders.deadLetterOfDelivery.load('a');
    expect(calls).toHaveLength(3);
  });
});
