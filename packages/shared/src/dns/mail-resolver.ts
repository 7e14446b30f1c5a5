// The one DNS resolver for everything mail-related (the MX routes and MTA-STS records of direct
// delivery; the edge's SPF, DKIM, DMARC and ARC checks, apps/mta/src/auth/): one place that says which servers
// are asked (MAIL_DNS_SERVERS, else the system's), how long an answer is kept, and which failures
// are answers and which are not.
// What is cached, and for how long (docs/core.md, "DNS"):
// - A and AAAA: for the record's own TTL (Node's Resolver exposes it with { ttl: true }), at most
//   MAX_TTL_MS; a TTL of 0 is not kept.
// - MX, TXT, CNAME and PTR: Node does not expose their TTL, so they are kept for UNTIMED_TTL_MS, a stand-in
//   shorter than the hour most domains publish for them.
// - "no such name" (NXDOMAIN) and "no record of this type" (NODATA) are answers too: kept for
//   NEGATIVE_TTL_MS (the SOA minimum that should bound them is not exposed either).
// - A failure — timeout, SERVFAIL, REFUSED, no server reachable — is not an answer and is never
//   kept: the next lookup asks again. Callers treat it as temporary (isDnsNoRecord says which is which).
// Concurrent lookups of one name and type share one query (lru-cache's fetch), and the cache holds
// at most MAX_ENTRIES answers, least recently used dropped first.
import { promises as dns } from 'node:dns';
import { LRUCache } from 'lru-cache';

export interface MxRecord {
  exchange: string;
  priority: number;
}

/** The records each type answers with, in the shapes of Node's resolver (and of mx-connect's hook). */
export interface MailRecords {
  A: string[];
  AAAA: string[];
  MX: MxRecord[];
  TXT: string[][];
  /** DMARC's existence test of a name (RFC 9989 A.4) asks for its CNAME. */
  CNAME: string[];
  /** SPF's ptr mechanism and %{p} macro (RFC 7208 5.5). */
  PTR: string[];
}
export type MailRecordType = keyof MailRecords;
export const MAIL_RECORD_TYPES: readonly MailRecordType[] = ['A', 'AAAA', 'MX', 'TXT', 'CNAME', 'PTR'];

export const MAX_TTL_MS = 60 * 60 * 1000;
export const UNTIMED_TTL_MS = 5 * 60 * 1000;
export const NEGATIVE_TTL_MS = 60 * 1000;
export const MAX_ENTRIES = 10_000;
/** Tries per lookup; the lookup's time is split between them. */
const TRIES = 2;

/** What one query returned: records with their TTL in seconds where the resolver exposes it. */
export type QueryResult = { records: MailRecords[MailRecordType]; ttlSeconds: number | null };
export type DnsQuery = (name: string, type: MailRecordType) => Promise<QueryResult>;

export interface MailResolverOptions {
  /** "ip", "ip:port" or "[ipv6]:port" (MAIL_DNS_SERVERS); null: the system's resolvers. */
  servers: readonly string[] | null;
  /** How long one lookup may take, all tries together. */
  timeoutMs: number;
  /** Replaces the query to the DNS servers (unit tests). */
  query?: DnsQuery;
}

export interface MailResolver {
  resolve<T extends MailRecordType>(name: string, type: T): Promise<MailRecords[T]>;
  /** Where lookups go, for the boot log. */
  readonly servers: readonly string[];
  /** Abandon the queries under way (they fail with ECANCELLED). */
  cancel(): void;
}

/** An error of Node's resolver that is an answer: the name does not exist, or has no such record. */
export function isDnsNoRecord(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === dns.NOTFOUND || code === dns.NODATA;
}

type Cached = { kind: 'records'; records: MailRecords[MailRecordType] } | { kind: 'none'; code: string; message: string };

/** How long an answer is kept, in ms (0: not kept). */
export function cacheTtlMs(type: MailRecordType, answer: { ttlSeconds: number | null } | 'none'): number {
  if (answer === 'none') return NEGATIVE_TTL_MS;
  if (answer.ttlSeconds === null) return UNTIMED_TTL_MS;
  return Math.min(answer.ttlSeconds * 1000, type === 'A' || type === 'AAAA' ? MAX_TTL_MS : UNTIMED_TTL_MS);
}

function nodeQuery(resolver: dns.Resolver): DnsQuery {
  return async (name, type) => {
    switch (type) {
      case 'A':
      case 'AAAA': {
        const answers = type === 'A' ? await resolver.resolve4(name, { ttl: true }) : await resolver.resolve6(name, { ttl: true });
        const ttl = answers.length > 0 ? Math.min(...answers.map((answer) => answer.ttl)) : 0;
        return { records: answers.map((answer) => answer.address), ttlSeconds: ttl };
      }
      case 'MX':
        return { records: (await resolver.resolveMx(name)).map(({ exchange, priority }) => ({ exchange, priority })), ttlSeconds: null };
      case 'TXT':
        return { records: await resolver.resolveTxt(name), ttlSeconds: null };
      case 'CNAME':
        return { records: await resolver.resolveCname(name), ttlSeconds: null };
      case 'PTR':
        return { records: await resolver.resolvePtr(name), ttlSeconds: null };
    }
  };
}

function noRecordError(cached: { code: string; message: string }): Error {
  return Object.assign(new Error(cached.message), { code: cached.code });
}

export function createMailResolver(options: MailResolverOptions): MailResolver {
  const perTryMs = Math.max(100, Math.floor(options.timeoutMs / TRIES));
  // maxTimeout keeps c-ares from doubling the wait on the second try: the two tries fit the budget.
  const resolver = new dns.Resolver({ timeout: perTryMs, tries: TRIES, maxTimeout: perTryMs });
  if (options.servers && options.servers.length > 0) resolver.setServers([...options.servers]);
  const query = options.query ?? nodeQuery(resolver);
  const cache = new LRUCache<string, Cached, { name: string; type: MailRecordType }>({
    max: MAX_ENTRIES,
    fetchMethod: async (_key, _stale, { options: set, context }) => {
      try {
        const result = await query(context.name, context.type);
        // lru-cache reads a TTL of 0 as "forever": 1 ms is "not kept" (concurrent lookups still share it).
        set.ttl = Math.max(1, cacheTtlMs(context.type, result));
        return { kind: 'records', records: result.records };
      } catch (error) {
        if (!isDnsNoRecord(error)) throw error;
        set.ttl = cacheTtlMs(context.type, 'none');
        return { kind: 'none', code: (error as { code: string }).code, message: (error as Error).message };
      }
    },
  });
  return {
    servers: options.servers && options.servers.length > 0 ? [...options.servers] : resolver.getServers(),
    async resolve<T extends MailRecordType>(name: string, type: T): Promise<MailRecords[T]> {
      const normalized = name.toLowerCase().replace(/\.$/, '');
      const cached = await cache.fetch(`${type} ${normalized}`, { context: { name: normalized, type } });
      if (!cached) throw Object.assign(new Error(`DNS lookup of ${type} ${normalized} was abandoned`), { code: dns.CANCELLED });
      if (cached.kind === 'none') throw noRecordError(cached);
      return cached.records as MailRecords[T];
    },
    cancel() {
      resolver.cancel();
    },
  };
}
