import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, SqlConditions } from './pagination.ts';

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

describe('SqlConditions', () => {
  it('numbers every value as a $n parameter, in order, and never inlines it', () => {
    const conditions = new SqlConditions().add('a = $?', "x'; DROP TABLE y; --").add('(b, c) > ($?, $?)', 1, 2);
    const limit = conditions.param(10);
    expect(conditions.where()).toBe('WHERE a = $1 AND (b, c) > ($2, $3)');
    expect(limit).toBe('$4');
    expect(conditions.values).toEqual(["x'; DROP TABLE y; --", 1, 2, 10]);
  });

  it('clones independently and refuses a fragment with too few parameters', () => {
    const base = new SqlConditions().add('a = $?', 1);
    const copy = base.clone().add('b = $?', 2);
    expect(base.values).toEqual([1]);
    expect(copy.where()).toBe('WHERE a = $1 AND b = $2');
    expect(() => new SqlConditions().add('a = $? AND b = $?', 1)).toThrow(/placeholders/);
    expect(new SqlConditions().where()).toBe('');
  });
});
