// The route table as the engine reads it at send time: the route of one recipient domain, looked
// up in mail.routes (exact, else the longest parent, else none: packages/shared/src/routes/) and
// kept for at most ROUTE_CACHE_MS, so a route set, changed or deleted through the API takes effect
// for every send that starts that long after the change, on every engine, without a restart. One
// indexed query per recipient domain per ROUTE_CACHE_MS; concurrent sends to one domain share it.
// A lookup that fails (PostgreSQL away) answers with the domain's last route this engine read, if
// it read one: routes change only through PostgreSQL, so while it is away the last answer is still
// the table (at most ROUTE_CACHE_MS behind), and sends already claimed go on as they did before
// routes existed. A domain never read fails the send as temporary: mail is never sent by a route
// the engine could not read, nor bounced for it.
import type { RouteRule } from '@postern/shared';

/** How long a domain's route is reused before the table is asked again. */
export const ROUTE_CACHE_MS = 2_000;
/** Domains remembered at most; past it the cache starts again empty (each entry lives 2 s anyway). */
const MAX_CACHED_DOMAINS = 10_000;

export interface RouteTable {
  /** The route of a normalised recipient domain now, or null (the default of MAIL_SMTP_MODE). */
  lookup(domain: string): Promise<RouteRule | null>;
}

export interface RouteTableOptions {
  load: (domain: string) => Promise<RouteRule | null>;
  /** Default ROUTE_CACHE_MS; 0 asks the table on every send. */
  maxAgeMs?: number;
  now?: () => number;
}

export function createRouteTable(options: RouteTableOptions): RouteTable {
  const maxAgeMs = options.maxAgeMs ?? ROUTE_CACHE_MS;
  const now = options.now ?? (() => performance.now());
  const cache = new Map<string, { at: number; rule: Promise<RouteRule | null> }>();
  /** The last answer the table gave for each domain, for when it cannot be read. */
  const lastRead = new Map<string, RouteRule | null>();
  return {
    lookup(domain) {
      const at = now();
      const cached = cache.get(domain);
      if (cached && at - cached.at < maxAgeMs) return cached.rule;
      if (cache.size >= MAX_CACHED_DOMAINS) cache.clear();
      if (lastRead.size >= MAX_CACHED_DOMAINS) lastRead.clear();
      const rule: Promise<RouteRule | null> = options.load(domain).then(
        (read) => {
          lastRead.set(domain, read);
          return read;
        },
        (error: unknown) => {
          // A failed lookup is not remembered: the next send asks again.
          if (cache.get(domain)?.rule === rule) cache.delete(domain);
          if (lastRead.has(domain)) return lastRead.get(domain) ?? null;
          throw error;
        },
      );
      cache.set(domain, { at, rule });
      return rule;
    },
  };
}
