import { describe, expect, it } from 'vitest';
import { repeatedTopLevelKeys } from './repeated-keys.ts';

describe('repeatedTopLevelKeys', () => {
  it('names a top-level key written twice, which JSON.parse would hide', () => {
    expect(repeatedTopLevelKeys('{"component":"stream","consumer":"c","component":"stream-doorbell"}')).toEqual(['component']);
  });

  it('does not count keys of nested objects and arrays, or key-like text inside strings', () => {
    const line = JSON.stringify({ a: { a: 1, b: [{ a: 2 }] }, msg: '"a":1,"msg":"x"', b: ['a', { msg: 'y' }] });
    expect(repeatedTopLevelKeys(line)).toEqual([]);
  });

  it('reads escaped quotes and backslashes in keys and values', () => {
    expect(repeatedTopLevelKeys('{"k\\"":"v\\\\","x":"\\"","k\\"":1}')).toEqual(['k"']);
  });
});
