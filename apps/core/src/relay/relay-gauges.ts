// mail_relay_backed_off{relay,use}: the relays of smtp mode this engine holds back now
// (relay-health.ts), read from its in-memory health at each scrape, so the figure is never stale: a
// relay that heals reads 0 at the next scrape, and one whose last pool was closed (a route unused
// for 5 minutes; the health is reference-counted and forgotten with it) has no series any more.
// One series per host:port and use: MAIL_SMTP_ADDR's relay is `use="default"` — all mail without a
// route stops while it is backed off (PosternDefaultRelayBackedOff pages) — and the relays of routes
// are `use="route"`. Their number is bounded by what operators write (MAIL_SMTP_ADDR and the route
// table), never by recipient domains; identities of one host:port (TLS requirement, credentials)
// share its series, backed off when any of them is. Each engine reports its own view: the alert
// rules take the max over engines. The sites of mx mode are shared rows: site-backoff-gauges.ts.
import { prometheus, type Registry } from '@postern/shared';
import type { RelayHealth } from './relay-health.ts';

export function registerRelayGauges(registry: Registry, health: Pick<RelayHealth, 'relays'>): void {
  new prometheus.Gauge({
    name: 'mail_relay_backed_off',
    help: 'smtp mode: 1 while this engine holds a relay host back (backed off, or probed after a backoff, until a session is set up), 0 while it sends to it; use: default (MAIL_SMTP_ADDR) or route',
    labelNames: ['relay', 'use'],
    registers: [registry],
    collect() {
      const values = new Map<string, { relay: string; use: string; value: number }>();
      for (const report of health.relays()) {
        const id = `${report.use} ${report.site}`;
        const value = report.backedOff ? 1 : 0;
        values.set(id, { relay: report.site, use: report.use, value: Math.max(value, values.get(id)?.value ?? 0) });
      }
      this.reset();
      for (const { relay, use, value } of values.values()) this.set({ relay, use }, value);
    },
  });
}
