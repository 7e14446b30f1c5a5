// The request target, read without trusting anything a client controls beyond it. Measured before:
// the API built its URL from the Host header, so `Host: [` made `new URL()` throw and the request
// end as HTTP 500; the engine's internal route answered 500 to `/deliveries/%ff%fe` because
// decodeURIComponent threw. Every HTTP route reads its target here and answers 400 when there is
// no usable one: a bad request is the client's fault, and saying 500 would page an operator.

/** Only the path and query matter to every route here; the base is fixed, never the Host header. */
const BASE = 'http://localhost';

/** The request's path and query as a URL on the fixed base, or null when the target cannot be
 *  parsed. An absolute-form target's scheme, userinfo and host are dropped: `GET http://a@a/graphql`
 *  once reached fetch's Request with credentials in its URL, which throws (HTTP 500). */
export function requestTarget(rawUrl: string | undefined): URL | null {
  try {
    const parsed = new URL(rawUrl ?? '/', BASE);
    return new URL(`${parsed.pathname}${parsed.search}`, BASE);
  } catch {
    return null;
  }
}

/** A path segment percent-decoded, or null when it is not valid percent-encoded UTF-8. */
export function decodePathSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

// RFC 9110 7.2 / RFC 9112 3.2: uri-host [ ":" port ], where uri-host is an IP-literal, an IPv4
// address or a reg-name (unreserved, pct-encoded, sub-delims). Node checks only that it is present.
// The IP-literal also admits an RFC 6874 zone id (`[fe80::1%25eth0]`), which a probe may send.
const HOST = /^(?:\[[0-9A-Za-z:.%_~-]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]{0,5})?$/;

/** Why the request's Host header is unusable (RFC 9112 3.2: answer 400), or null. */
export function hostProblem(rawHeaders: readonly string[]): string | null {
  const hosts: string[] = [];
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    if ((rawHeaders[index] as string).toLowerCase() === 'host') hosts.push(rawHeaders[index + 1] as string);
  }
  if (hosts.length > 1) return 'more than one Host header';
  const host = hosts[0];
  if (host !== undefined && !HOST.test(host)) return 'the Host header is not a host[:port]';
  return null;
}
