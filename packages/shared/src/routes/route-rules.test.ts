import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { secretsKeyOf } from '../secrets/secrets-key.ts';
import { openRoutePassword, SealedRouteAuthError, sealRoutePassword } from './route-credentials.ts';
import { chooseRoute, describeRouteRelay, RouteInputError, routeAuth, routeCandidates, routeDomain, routeRelay, routeRule } from './route-rules.ts';

const rule = (domain: string) => ({ domain, relay: `${domain}-relay` });

describe('choosing a route', () => {
  const rules = [rule('example.com'), rule('.example.com'), rule('.eu.example.com'), rule('.other.test')];

  it('the exact route beats every parent route', () => {
    expect(chooseRoute('example.com', rules)?.domain).toBe('example.com');
  });

  it('a parent route matches subdomains at any depth, the longest parent first', () => {
    expect(chooseRoute('mail.example.com', rules)?.domain).toBe('.example.com');
    expect(chooseRoute('a.b.example.com', rules)?.domain).toBe('.example.com');
    expect(chooseRoute('paris.eu.example.com', rules)?.domain).toBe('.eu.example.com');
    expect(chooseRoute('x.paris.eu.example.com', rules)?.domain).toBe('.eu.example.com');
  });

  it('a parent route does not match the parent domain itself, nor a name that only ends alike', () => {
    expect(chooseRoute('other.test', rules)).toBeNull();
    expect(chooseRoute('notexample.com', rules)).toBeNull();
    expect(chooseRoute('eu.example.com', [rule('.eu.example.com')])).toBeNull();
  });

  it('no route: null (the default of MAIL_SMTP_MODE)', () => {
    expect(chooseRoute('elsewhere.test', rules)).toBeNull();
    expect(chooseRoute('example.com', [])).toBeNull();
  });

  it('candidates are asked in match order and never a one-label parent', () => {
    expect(routeCandidates('a.b.example.com')).toEqual(['a.b.example.com', '.b.example.com', '.example.com']);
    expect(routeCandidates('example.com')).toEqual(['example.com']);
  });

  it('whatever routes exist, the choice is the most specific one that matches', () => {
    const label = fc.constantFrom('a', 'b', 'c');
    const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => [...labels, 'test'].join('.'));
    const route = fc.tuple(fc.boolean(), name).map(([parent, domain]) => (parent ? `.${domain}` : domain));
    fc.assert(
      fc.property(name, fc.uniqueArray(route, { maxLength: 8 }), (domain, domains) => {
        const chosen = chooseRoute(domain, domains.map(rule));
        const matching = domains.filter((d) => d === domain || (d.startsWith('.') && domain.endsWith(d)));
        if (matching.length === 0) return chosen === null;
        const best = matching.includes(domain) ? domain : [...matching].sort((x, y) => y.length - x.length)[0];
        return chosen?.domain === best;
      }),
    );
  });
});

function refusal(work: () => unknown): RouteInputError {
  try {
    work();
  } catch (error) {
    if (error instanceof RouteInputError) return error;
    throw error;
  }
  throw new Error('not refused');
}

describe('route input', () => {
  it('domains are normalised: case, IDN as punycode, the parent dot kept', () => {
    expect(routeDomain('Example.COM')).toBe('example.com');
    expect(routeDomain('.Bücher.example')).toBe('.xn--bcher-kva.example');
    expect(routeDomain('example.com.')).toBe('example.com');
  });

  it.each([
    ['', 'domain'],
    ['..example.com', 'domain'],
    ['.com', 'domain'],
    ['exa mple.com', 'domain'],
    ['example.com\u0000', 'domain'],
    ['ex\r\nample.com', 'domain'],
    ['*.example.com', 'domain'],
    ['x'.repeat(400), 'domain'],
    ['\ud800.example.com', 'domain'],
  ])('refuses the domain %j naming the field', (input, field) => {
    expect(refusal(() => routeDomain(input)).field).toBe(field);
  });

  it('relays: mx, a host name, IPv4 and bracketed IPv6, each with a port', () => {
    expect(routeRelay('MX')).toEqual({ kind: 'mx' });
    expect(routeRelay('Relay.Example.net:587')).toEqual({ kind: 'host', host: 'relay.example.net', port: 587 });
    expect(routeRelay('192.0.2.7:25')).toEqual({ kind: 'host', host: '192.0.2.7', port: 25 });
    expect(routeRelay('[2001:DB8::1]:2525')).toEqual({ kind: 'host', host: '2001:db8::1', port: 2525 });
    expect(describeRouteRelay(routeRelay('[2001:db8::1]:2525'))).toBe('[2001:db8::1]:2525');
    expect(describeRouteRelay(routeRelay('relay.example.net:587'))).toBe('relay.example.net:587');
  });

  it.each([
    'relay.example.net',
    'relay.example.net:0',
    'relay.example.net:65536',
    'relay.example.net:25:25',
    '2001:db8::1:25',
    '[not-ipv6]:25',
    'relay\u0000.example.net:25',
    'relay.example.net:25\r\nRCPT TO:<x@y>',
    'user:pass@relay.example.net:25',
    'smtp://relay.example.net:25',
    ':25',
    'localhost:25',
  ])('refuses the relay %j naming the field', (input) => {
    expect(refusal(() => routeRelay(input)).field).toBe('relay');
  });

  it('tls: one of the two policies; "required" only with a relay host', () => {
    expect(refusal(() => routeRule({ domain: 'example.com', relay: 'mx', tls: 'sometimes' })).field).toBe('tls');
    expect(refusal(() => routeRule({ domain: 'example.com', relay: 'mx', tls: 'required' })).field).toBe('tls');
    expect(routeRule({ domain: 'example.com', relay: 'relay.example.net:25', tls: 'required' }).tls).toBe('required');
  });
});

describe("a route's credentials", () => {
  const verified = routeRule({ domain: 'example.com', relay: 'relay.example.net:587', tls: 'required' });

  it('go only with a relay host whose TLS is required', () => {
    expect(routeAuth(verified, { username: 'postern@example.com', password: 'p4ss wörd' })).toEqual({ username: 'postern@example.com', password: 'p4ss wörd' });
    const opportunistic = routeRule({ domain: 'example.com', relay: 'relay.example.net:587', tls: 'opportunistic' });
    expect(refusal(() => routeAuth(opportunistic, { username: 'u', password: 'p' })).message).toMatch(/only over TLS with a certificate that verifies/);
    const mx = routeRule({ domain: 'example.com', relay: 'mx', tls: 'opportunistic' });
    expect(refusal(() => routeAuth(mx, { username: 'u', password: 'p' })).field).toBe('auth');
  });

  it.each([
    ['', 'p'],
    ['u', ''],
    ['u'.repeat(256), 'p'],
    ['u', 'p'.repeat(1_025)],
    ['u\u0000x', 'p'],
    ['u', 'p\r\nRSET'],
    ['u', 'p\u0085'],
    ['u\ud800', 'p'],
  ])('refuses the username %j with the password %j, naming the field', (username, password) => {
    expect(refusal(() => routeAuth(verified, { username, password })).field).toBe('auth');
  });

  it('are sealed bound to their route and username: another key, route or username does not open them', () => {
    const key = secretsKeyOf(randomBytes(32));
    const sealed = sealRoutePassword(key, 'example.com', 'postern', 'the password');
    expect(sealed.toString('latin1')).not.toContain('the password');
    expect(openRoutePassword(key, 'example.com', { username: 'postern', passwordSealed: sealed })).toBe('the password');
    expect(() => openRoutePassword(secretsKeyOf(randomBytes(32)), 'example.com', { username: 'postern', passwordSealed: sealed })).toThrow(SealedRouteAuthError);
    expect(() => openRoutePassword(key, 'other.com', { username: 'postern', passwordSealed: sealed })).toThrow(SealedRouteAuthError);
    expect(() => openRoutePassword(key, 'example.com', { username: 'someone', passwordSealed: sealed })).toThrow(SealedRouteAuthError);
    expect(() => openRoutePassword(null, 'example.com', { username: 'postern', passwordSealed: sealed })).toThrow(/MAIL_SECRETS_KEY is not set/);
  });
});
