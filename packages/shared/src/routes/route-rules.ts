// What a route is and how one is chosen, without the database: the API checks input with these
// before anything is stored, the engine picks a route with them (manage-routes.ts reads the rows).
// A route's domain is a recipient domain in the normal form every lookup uses (normalizeDomain:
// A-labels, lower case), either exact — "example.com" matches example.com only — or a parent,
// written with a leading dot — ".example.com" matches every subdomain of example.com at any depth,
// not example.com itself (Postfix's transport map reads them the same way). Match order: the exact
// route, else the longest (most specific) parent route, else none (MAIL_SMTP_MODE's default).
import net from 'node:net';
import { InvalidAddressError, normalizeDomain } from '../addresses/normalize-address.ts';

export const ROUTE_TLS_POLICIES = ['opportunistic', 'required'] as const;
export type RouteTlsPolicy = (typeof ROUTE_TLS_POLICIES)[number];

/** Where a route sends: a relay host, or the recipient domain's own MX hosts (`mx`). */
export type RouteRelay = { kind: 'mx' } | { kind: 'host'; host: string; port: number };

export interface RouteRule {
  /** "example.com" (exact) or ".example.com" (its subdomains). */
  domain: string;
  relay: RouteRelay;
  tls: RouteTlsPolicy;
  /** The relay's SMTP AUTH credentials as stored: the password sealed (route-credentials.ts). */
  auth?: SealedRouteAuth;
}

export interface SealedRouteAuth {
  username: string;
  passwordSealed: Buffer;
}

/** The input names its field (`domain`, `relay`, `tls`, `auth`) and what is wrong with it. */
export class RouteInputError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'RouteInputError';
    this.field = field;
  }
}

const MAX_INPUT_CHARS = 300;

function quoted(input: string): string {
  return JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input);
}

/** A route's domain as stored: "example.com" or ".example.com", normalised. */
export function routeDomain(input: string): string {
  if (input.length > MAX_INPUT_CHARS) throw new RouteInputError('domain', `domain is longer than ${MAX_INPUT_CHARS} characters`);
  const parent = input.startsWith('.');
  try {
    const domain = normalizeDomain(parent ? input.slice(1) : input);
    return parent ? `.${domain}` : domain;
  } catch (error) {
    if (error instanceof InvalidAddressError) {
      throw new RouteInputError('domain', `${error.message}; a route's domain is a recipient domain, or ".domain" for its subdomains`);
    }
    throw error;
  }
}

/** "mx", "host:port", "[ipv6]:port" or "ipv4:port" -> the relay a route names. The host is a
 *  domain name (normalised like any other) or an IP address; the port is required: guessing 25
 *  or 587 for a relay is how mail goes to the wrong listener. */
export function routeRelay(input: string): RouteRelay {
  const text = input.trim();
  if (text.toLowerCase() === 'mx') return { kind: 'mx' };
  if (text.length > MAX_INPUT_CHARS) throw new RouteInputError('relay', `relay is longer than ${MAX_INPUT_CHARS} characters`);
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text);
  if (!match) throw new RouteInputError('relay', `relay ${quoted(input)} must be "mx" (the domain's MX hosts) or host:port, e.g. relay.example.net:587 or [2001:db8::1]:25`);
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new RouteInputError('relay', `port ${port} of relay ${quoted(input)} is out of range (1-65535)`);
  if (match[1] !== undefined) {
    if (!net.isIPv6(match[1])) throw new RouteInputError('relay', `${quoted(match[1])} in brackets is not an IPv6 address`);
    return { kind: 'host', host: match[1].toLowerCase(), port };
  }
  const host = match[2] as string;
  if (net.isIPv4(host)) return { kind: 'host', host, port };
  if (net.isIPv6(host)) throw new RouteInputError('relay', `write an IPv6 relay in brackets: [${host}]:${port}`);
  try {
    return { kind: 'host', host: normalizeDomain(host), port };
  } catch (error) {
    if (error instanceof InvalidAddressError) throw new RouteInputError('relay', `relay host: ${error.message}`);
    throw error;
  }
}

export function routeTls(input: string): RouteTlsPolicy {
  if ((ROUTE_TLS_POLICIES as readonly string[]).includes(input)) return input as RouteTlsPolicy;
  throw new RouteInputError('tls', `tls must be one of ${ROUTE_TLS_POLICIES.join(', ')}`);
}

/** A whole route from its three inputs, each checked and normalised, or RouteInputError. */
export function routeRule(input: { domain: string; relay: string; tls: string }): RouteRule {
  const rule = { domain: routeDomain(input.domain), relay: routeRelay(input.relay), tls: routeTls(input.tls) };
  if (rule.relay.kind === 'mx' && rule.tls === 'required') {
    throw new RouteInputError('tls', 'tls "required" is for routes to a relay host; direct delivery (mx) uses STARTTLS whenever an MX host offers it');
  }
  return rule;
}

/** The credentials a route's relay is sent with (SMTP AUTH), in the clear: only while sending. */
export interface RouteAuth {
  username: string;
  password: string;
}

const MAX_USERNAME_CHARS = 255;
const MAX_PASSWORD_CHARS = 1_024;
// Control characters (C0, DEL, C1): AUTH PLAIN separates its fields with NUL and every SMTP command
// ends at CRLF, so none of them has a place in a username or a password.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** A route's credentials, checked against the route they go with, or RouteInputError (field auth). */
export function routeAuth(rule: RouteRule, input: RouteAuth): RouteAuth {
  if (rule.relay.kind !== 'host') throw new RouteInputError('auth', 'credentials are for a route to a relay host; direct delivery (mx) does not authenticate');
  if (rule.tls !== 'required') {
    throw new RouteInputError('auth', 'credentials are sent only over TLS with a certificate that verifies for the relay: set tls to required');
  }
  const { username, password } = input;
  if (username.length === 0 || username.length > MAX_USERNAME_CHARS) throw new RouteInputError('auth', `the username must be 1 to ${MAX_USERNAME_CHARS} characters`);
  if (password.length === 0 || password.length > MAX_PASSWORD_CHARS) throw new RouteInputError('auth', `the password must be 1 to ${MAX_PASSWORD_CHARS} characters`);
  if (CONTROL.test(username) || CONTROL.test(password)) throw new RouteInputError('auth', 'the username and the password may not hold control characters (NUL, CR, LF, ...)');
  if (!username.isWellFormed() || !password.isWellFormed()) {
    throw new RouteInputError('auth', 'the username and the password must be valid Unicode (no lone surrogates)');
  }
  return { username, password };
}

/** "mx", "relay.example.net:587" or "[2001:db8::1]:25": how the API shows and the attempt records a relay. */
export function describeRouteRelay(relay: RouteRelay): string {
  if (relay.kind === 'mx') return 'mx';
  return net.isIPv6(relay.host) ? `[${relay.host}]:${relay.port}` : `${relay.host}:${relay.port}`;
}

/** The route domains that could match `domain` (normalised), in match order: the domain itself,
 *  then ".parent" for each parent domain, longest first (".b.example.com", ".example.com"). A
 *  parent of one label (".com") is never a route (routeDomain refuses it), so it is not asked for. */
export function routeCandidates(domain: string): string[] {
  const labels = domain.split('.');
  const candidates = [domain];
  for (let i = 1; i < labels.length - 1; i += 1) candidates.push(`.${labels.slice(i).join('.')}`);
  return candidates;
}

/** The route `domain` takes among `rules`: exact, else the longest parent, else null. */
export function chooseRoute<T extends { domain: string }>(domain: string, rules: readonly T[]): T | null {
  const byDomain = new Map(rules.map((rule) => [rule.domain, rule]));
  for (const candidate of routeCandidates(domain)) {
    const rule = byDomain.get(candidate);
    if (rule) return rule;
  }
  return null;
}
