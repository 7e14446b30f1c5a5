import { describe, expect, it } from 'vitest';
import { bearerTokenOf } from './bearer-token.ts';

describe('bearerTokenOf', () => {
  it('reads the token of a Bearer header, whatever the scheme case', () => {
    expect(bearerTokenOf('Bearer pst_abc-_DEF')).toBe('pst_abc-_DEF');
    expect(bearerTokenOf('bearer pst_x')).toBe('pst_x');
  });

  it('gives nothing for other schemes, empty or malformed headers', () => {
    expect(bearerTokenOf(undefined)).toBeNull();
    expect(bearerTokenOf('')).toBeNull();
    expect(bearerTokenOf('Basic dXNlcjpwYXNz')).toBeNull();
    expect(bearerTokenOf('Bearer')).toBeNull();
    expect(bearerTokenOf('Bearer two tokens')).toBeNull();
  });
});
