// The bytes a query string or form body stands for, as request-parsing.ts checks them for UTF-8.
import { describe, expect, it } from 'vitest';
import { percentDecodedBytes, searchParams } from './request-parsing.ts';

describe('percentDecodedBytes', () => {
  it.each([
    ['query=%7B__typename%7D', Buffer.from('query={__typename}')],
    ['a=Gr%C3%BC%c3%9fe', Buffer.from('a=Grüße')],
    ['a=%FC', Buffer.from([0x61, 0x3d, 0xfc])],
    ['a=%ZZ&b=%', Buffer.from('a=%ZZ&b=%')],
    ['a=%%41', Buffer.from('a=%A')],
    ['a=ü%FC', Buffer.from([0x61, 0x3d, 0xc3, 0xbc, 0xfc])],
  ])('%s', (text, bytes) => {
    expect(percentDecodedBytes(text)).toEqual(bytes);
  });
});

describe('searchParams', () => {
  it('reads a query string as URLSearchParams does', () => {
    expect(searchParams('?query=%7B__typename%7D&variables=%7B%22a%22%3A%22%C3%BC%22%7D&operationName=')).toEqual({
      query: '{__typename}',
      variables: { a: 'ü' },
      operationName: undefined,
      extensions: undefined,
    });
  });

  it.each(['variables=%7B%22a%22%3A%22%FC%22%7D', 'query=%ED%A0%80', 'query=%E2%82'])('refuses %s: not UTF-8 once decoded', (text) => {
    expect(() => searchParams(text)).toThrow(/not valid UTF-8 once percent-decoded/);
  });
});
