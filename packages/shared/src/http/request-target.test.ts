import { describe, expect, it } from 'vitest';
import { decodePathSegment, hostProblem, requestTarget } from './request-target.ts';

describe('request target and Host', () => {
  it('reads the path and query whatever the Host, and says null for a target URL cannot parse', () => {
    expect(requestTarget('/graphql?x=1')?.pathname).toBe('/graphql');
    expect(requestTarget('http://other.example/graphql')?.pathname).toBe('/graphql');
    expect(requestTarget('http://[/graphql')).toBeNull();
    // Found by the API's random-request property test: userinfo in an absolute-form target.
    const withCredentials = requestTarget('http://a@a/graphql?x=1');
    expect(withCredentials?.href).toBe('http://localhost/graphql?x=1');
    expect(withCredentials?.username).toBe('');
  });

  it('decodes a path segment or says null for bad percent-encoding', () => {
    expect(decodePathSegment('abc%20d')).toBe('abc d');
    expect(decodePathSegment('%ff%fe')).toBeNull();
    expect(decodePathSegment('%')).toBeNull();
  });

  it('accepts host[:port] and refuses a malformed or repeated Host (RFC 9112 3.2)', () => {
    for (const host of ['api.test', 'api.test:4000', '127.0.0.1:4000', '[::1]:4000', '[fe80::1%25eth0]:4001', '']) expect(hostProblem(['Host', host]), host).toBeNull();
    expect(hostProblem([])).toBeNull();
    for (const host of ['[', 'a b', 'a/b', 'a?b', 'a#b', 'a@b', 'a:b:c', 'a\u00ffb']) expect(hostProblem(['Host', host]), host).not.toBeNull();
    expect(hostProblem(['Host', 'a.test', 'host', 'b.test'])).toMatch(/more than one/);
  });
});
