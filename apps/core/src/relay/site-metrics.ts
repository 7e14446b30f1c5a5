// Per-site metrics of direct delivery (docs/observability.md), and the deferrals and backoffs of
// smtp mode's relay hosts (relay-health.ts), whose site label is the relay's host:port. The site
// label is the site's key (site-key.ts), shortened; the first MAX_SITE_LABELS sites this engine sees get their own label
// and every later one is counted as `other`, so a queue spread over many thousands of domains
// cannot grow the series without bound.
import { prometheus, type Registry } from '@postern/shared';
import type { TlsUse } from './relay.ts';

export const MAX_SITE_LABELS = 50;
const MAX_LABEL_LENGTH = 120;

/** probe: a relay host (smtp mode) whose last session failed is being probed by another send;
 *  throttle: the relay said this engine sends too fast (relay-health.ts); connections: the relay
 *  refused more connections than this engine has open to it. */
export type DeferralReason = 'slot' | 'rate' | 'backoff' | 'probe' | 'throttle' | 'connections';

export interface SiteMetrics {
  attempt(site: string, outcome: string): void;
  deferral(site: string, reason: DeferralReason): void;
  connection(site: string, how: 'opened' | 'reused'): void;
  tls(site: string, tls: TlsUse): void;
  backoff(site: string): void;
}

export function createSiteMetrics(registry: Registry): SiteMetrics {
  const labels = new Map<string, string>();
  const labelOf = (site: string): string => {
    const known = labels.get(site);
    if (known) return known;
    if (labels.size >= MAX_SITE_LABELS) return 'other';
    const label = site.length > MAX_LABEL_LENGTH ? `${site.slice(0, MAX_LABEL_LENGTH - 1)}…` : site;
    labels.set(site, label);
    return label;
  };
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new prometheus.Counter<L>({ name, help, labelNames, registers: [registry] });
  const attempts = counter('mail_site_attempts_total', 'Direct-delivery sends per destination site by outcome (sent, or the failure kind: reply, timeout, connection, ...)', ['site', 'outcome']);
  const deferrals = counter('mail_site_deferrals_total', 'Deliveries deferred without connecting: no free connection slot, no rate token, the site or relay backed off, or the relay being probed', ['site', 'reason']);
  const connections = counter('mail_site_connections_total', 'Sessions per destination site: connections opened, and pooled connections reused for another message', ['site', 'how']);
  const tlsUsed = counter('mail_site_tls_total', 'Connections opened per destination site by TLS use: none, verified, unverified (opportunistic)', ['site', 'tls']);
  const backoffs = counter('mail_site_backoffs_total', 'Times a destination site or relay host was backed off: every MX host (or the relay) refused the connection or the session setup', ['site']);
  return {
    attempt: (site, outcome) => attempts.inc({ site: labelOf(site), outcome }),
    deferral: (site, reason) => deferrals.inc({ site: labelOf(site), reason }),
    connection: (site, how) => connections.inc({ site: labelOf(site), how }),
    tls: (site, tls) => tlsUsed.inc({ site: labelOf(site), tls: tls.kind }),
    backoff: (site) => backoffs.inc({ site: labelOf(site) }),
  };
}
