import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, keysetConnection } from './pagination.ts';

describe('keyset cursors', () => {
  it('round-trip the microsecond timestamp and the id', () => {
    const cursor = encodeCursor({ cursorAt: '2025-01-31T12:00:00.123456Z', id: '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab' });
    expect(decodeCursor(cursor)).toEqual({ at: '2025-01-31T12:00:00.123456Z', id: '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab' });
  });

  it('refuse anything that is not one of ours, the same way every time', () => {
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    for (const cursor of ['', 'not-base64!', forged({}), forged(['yesterday', '1']), forged(['2025-01-01T00:00:00Z', "1' OR 1=1"])]) {
      expect(() => decodeCursor(cursor), cursor).toThrow(/invalid cursor/);
    }
  });
});

describe('keysetConnection', () => {
  const statements = { ASC: 'SELECT ... ASC', DESC: 'SELECT ... DESC' } as const;
  const row = (id: string) => ({ id, cursorAt: `2025-01-31T12:00:00.00000${id}Z` });

  it('reads forward pages ascending, with the filters first, then after, before and the limit', async () => {
    const calls: Array<{ text: string; values: unknown[] }> = [];
    const after = encodeCursor(row('1'));
    await keysetConnection({ first: 2, after }, statements, ["x'; DROP TABLE y; --", null], async (text, values) => {
      calls.push({ text, values });
      return [row('2'), row('3')];
    });
    expect(calls).toEqual([
      { text: statements.ASC, values: ["x'; DROP TABLE y; --", null, '2025-01-31T12:00:00.000001Z', '1', null, null, 3] },
    ]);
  });

  it('reads a backward page descending and gives its rows back in order', async () => {
    const calls: Array<{ text: string; values: unknown[] }> = [];
    const before = encodeCursor(row('9'));
    const connection = await keysetConnection({ last: 2, before }, statements, [], async (text, values) => {
      calls.push({ text, values });
      return [row('8'), row('7')];
    });
    expect(calls).toEqual([{ text: statements.DESC, values: [null, null, '2025-01-31T12:00:00.000009Z', '9', 3] }]);
    expect(connection.edges.map((edge) => edge.node.id)).toEqual(['7', '8']);
  });
});
