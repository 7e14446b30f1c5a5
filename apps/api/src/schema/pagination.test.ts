import fc from 'fast-check';
import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { type CursorSpec, decodeCursor, encodeCursor, keysetConnection, keysetStatements } from './pagination.ts';

const domains: CursorSpec = { list: 'domains', idType: 'bigint' };
const deliveries: CursorSpec = { list: 'deliveries', idType: 'uuid' };
const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function refusal(run: () => unknown): GraphQLError {
  try {
    run();
  } catch (error) {
    if (error instanceof GraphQLError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('keyset cursors', () => {
  it('round-trip the list, the microsecond timestamp and the id', () => {
    const cursor = encodeCursor(deliveries, { cursorAt: '2025-01-31T12:00:00.123456Z', id: '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab' });
    expect(decodeCursor(cursor, deliveries)).toEqual({ at: '2025-01-31T12:00:00.123456Z', id: '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab' });
    expect(decodeCursor(encodeCursor(domains, { cursorAt: '2025-01-31T12:00:00.000000Z', id: '9223372036854775807' }), domains).id).toBe(
      '9223372036854775807',
    );
  });

  it('refuse anything that is not one of ours, with BAD_USER_INPUT and the reason', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /not a cursor/],
      ['not-base64!', /not a cursor/],
      [forged({}), /forged or truncated/],
      [forged(['domains', 'yesterday', '1']), /timestamp/],
      [forged(['domains', '2025-01-01T00:00:00.000000Z', "1' OR 1=1"]), /id/],
      // The measured INTERNAL_SERVER_ERRORs: an id past bigint, an impossible date, a cursor of another list.
      [forged(['domains', '2025-01-01T00:00:00.000000Z', '9223372036854775808']), /id/],
      [forged(['domains', '2025-02-30T00:00:00.000000Z', '1']), /timestamp/],
      [encodeCursor(deliveries, { cursorAt: '2025-01-01T00:00:00.000000Z', id: '0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab' }), /another list/],
      // The cursor format before lists were named in it.
      [forged(['2025-01-01T00:00:00.000000Z', '1']), /forged or truncated/],
      [encodeCursor(domains, { cursorAt: '2025-01-01T00:00:00.000000Z', id: '12' }).slice(0, -3), /not a cursor|forged/],
    ];
    for (const [cursor, reason] of cases) {
      const error = refusal(() => decodeCursor(cursor, domains));
      expect(error.extensions.code, cursor).toBe('BAD_USER_INPUT');
      expect(error.message, cursor).toMatch(/^invalid cursor in "after": /);
      expect(error.message, cursor).toMatch(reason);
    }
  });

  it('never throw anything but BAD_USER_INPUT, whatever the string (property)', () => {
    const anyCursor = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.base64String(),
      fc.json().map((json) => Buffer.from(json).toString('base64url')),
      fc.tuple(fc.string(), fc.string(), fc.string()).map(forged),
    );
    fc.assert(
      fc.property(anyCursor, fc.constantFrom(domains, deliveries), (cursor, spec) => {
        try {
          const decoded = decodeCursor(cursor, spec);
          // Whatever passes is something the SQL casts accept.
          expect(decoded.at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
        } catch (error) {
          expect(error).toBeInstanceOf(GraphQLError);
          expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('decode every cursor they encoded (property)', () => {
    const instant = fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true });
    fc.assert(
      fc.property(instant, fc.integer({ min: 0, max: 999 }), fc.bigInt({ min: 1n, max: 9223372036854775807n }), (date, micros, id) => {
        const cursorAt = `${date.toISOString().slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
        const cursor = encodeCursor(domains, { cursorAt, id: String(id) });
        expect(decodeCursor(cursor, domains)).toEqual({ at: cursorAt, id: String(id) });
      }),
    );
  });
});

describe('keysetConnection', () => {
  const statements = { ...domains, ASC: 'SELECT ... ASC', DESC: 'SELECT ... DESC' } as const;
  const row = (id: string) => ({ id, cursorAt: `2025-01-31T12:00:00.00000${id}Z` });

  it('reads forward pages ascending, with the filters first, then after, before and the limit', async () => {
    const calls: Array<{ text: string; values: unknown[] }> = [];
    const after = encodeCursor(domains, row('1'));
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
    const before = encodeCursor(domains, row('9'));
    const connection = await keysetConnection({ last: 2, before }, statements, [], async (text, values) => {
      calls.push({ text, values });
      return [row('8'), row('7')];
    });
    expect(calls).toEqual([{ text: statements.DESC, values: [null, null, '2025-01-31T12:00:00.000009Z', '9', 3] }]);
    expect(connection.edges.map((edge) => edge.node.id)).toEqual(['7', '8']);
  });

  it('reads an empty cursor (the endCursor of an empty page) as none', async () => {
    const calls: unknown[][] = [];
    await keysetConnection({ first: 2, after: '' }, statements, [], async (_text, values) => {
      calls.push(values);
      return [];
    });
    expect(calls).toEqual([[null, null, null, null, 3]]);
  });

  it('refuses a negative page size as BAD_USER_INPUT, before any query', async () => {
    const error = await keysetConnection({ first: -1 }, statements, [], async () => []).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GraphQLError);
    expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
  });
});

describe('keyset statements', () => {
  it('are one template read in both directions, differing only in the ORDER BY', () => {
    const statements = keysetStatements(domains, 'SELECT 1 FROM t ORDER BY t.created_at /*DIRECTION*/, t.id /*DIRECTION*/ LIMIT $5');
    expect(statements.ASC).toBe('SELECT 1 FROM t ORDER BY t.created_at ASC, t.id ASC LIMIT $5');
    expect(statements.DESC).toBe('SELECT 1 FROM t ORDER BY t.created_at DESC, t.id DESC LIMIT $5');
    expect(statements.list).toBe('domains');
  });

  it('refuse a template that does not mark both ordering columns', () => {
    expect(() => keysetStatements(domains, 'SELECT 1 FROM t ORDER BY t.created_at /*DIRECTION*/, t.id ASC')).toThrow(/DIRECTION\*\/ 2 time/);
  });
});
