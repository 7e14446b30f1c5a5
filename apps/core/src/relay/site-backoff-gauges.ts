// mail_sites_backed_off and mail_sites_backed_off_longest_ms: the destination sites (direct
// delivery: mx mode, and routes to "mx" in smtp mode) backed off now, for every engine. A site's
// backoff is a row of mail.site_backoffs that every engine shares (site-store.ts), so the figures
// come from that table, read in the background like the queue's (schedule-sampler.ts: a scrape
// never waits for PostgreSQL), and each engine reports the same ones: the alert rules take the max.
// A count and the age of the longest outage, not a series per site: sites are recipients' MX host
// sets, as many as the domains mailed, and a label per site would grow the series without bound
// (mail_site_*_total keep 50 per engine and call the rest `other`, which a gauge cannot sum
// honestly). Which sites they are is one query away (docs/runbook.md#site-backed-off).
// A site is backed off from its first failure (`since`) until a session is set up (the row is
// deleted), its probes included; but a row whose backoff ended more than `staleAfterMs` ago with
// no failure since is not counted: nothing has tried the site since (its deliveries ended or went
// elsewhere), and retention keeps such rows for MAIL_RETENTION_AGE.
import { exportSampledGauges, type Logger, type Queryable, type Registry, type ScheduleSampler } from '@postern/shared';

/** The least `staleAfterMs` the engine gives (engine.ts adds the send deadline when longer). */
export const SITE_BACKOFF_STALE_MS = 15 * 60_000;

export interface SiteBackoffStats {
  /** Sites backed off now (or probed after a backoff, without a session since). */
  sites: number;
  /** How long the longest of those outages has lasted, in ms (0: none). */
  longestMs: number;
}

const SITE_BACKOFFS_SQL = `
SELECT count(*)::int AS sites,
       COALESCE(EXTRACT(EPOCH FROM now() - min(since)) * 1000, 0)::float8 AS longest_ms
  FROM mail.site_backoffs
 WHERE until > now() - $1::double precision * interval '1 millisecond'`;

export async function readSiteBackoffs(db: Queryable, staleAfterMs: number): Promise<SiteBackoffStats> {
  const { rows } = await db.query<{ sites: number; longest_ms: number }>(SITE_BACKOFFS_SQL, [staleAfterMs]);
  return { sites: Number(rows[0]?.sites ?? 0), longestMs: Math.max(0, Number(rows[0]?.longest_ms ?? 0)) };
}

/** Samples the site backoffs from `db` every intervalMs (at least 1 s) and exports them on `registry`. */
export function exportSiteBackoffGauges(options: { registry: Registry; db: Queryable; intervalMs: number; staleAfterMs: number; logger: Logger }): ScheduleSampler<SiteBackoffStats> {
  return exportSampledGauges<SiteBackoffStats>({
    registry: options.registry,
    read: () => readSiteBackoffs(options.db, options.staleAfterMs),
    intervalMs: options.intervalMs,
    logger: options.logger,
    what: 'site backoffs',
    gauges: [
      { name: 'mail_sites_backed_off', help: 'Destination sites (direct delivery) backed off now, across all engines: no session set up since every MX host failed', pick: (s) => s.sites },
      { name: 'mail_sites_backed_off_longest_ms', help: 'How long the longest current site backoff has lasted since its first failure, in ms (0: none)', pick: (s) => s.longestMs },
    ],
  });
}
