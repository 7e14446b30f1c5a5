// Bearer-token lookups, capped below the pool. Each /graphql request with a token of the right
// shape costs one PostgreSQL lookup before its body is read, and nobody needs a token to send one:
// 500 connections with a made-up `pst_...` and a body never finished queued 500 lookups on the whole
// pool, the resolvers' own queries waited behind them, and so did the /readyz check (on the pool
// then; on its own connection now, db/readiness-probe.ts). So a quarter of the pool at most does
// lookups (at least one); the rest stays for the queries of requests already authenticated. A
// request that gets no lookup slot within TOKEN_LOOKUP_LIMITS.waitMs is answered 503 with
// Retry-After (graphql-route.ts), without having touched the pool, and counted in
// mail_api_token_lookups_refused_total. A request whose client closed the connection before its
// lookup began gives its place up and runs none (a flood that sends a token and hangs up), counted
// in mail_api_token_lookups_abandoned_total.
// A freed slot goes to the waiting clients in turn, by network (IPv4 address, IPv6 /64), not first
// come first served: one client's flood queued hundreds of lookups, and every other client's
// request waited behind them until it was answered 503 too. Behind a proxy every request comes
// from the proxy's address, and the turns are one queue again.
//
// No cache of answers: a token revoked must stop working on the next request, and a cache of
// "unknown" would be a cache the flood fills.
import { clientNetworkKey, LookupSlots, looksLikeApiToken, type Queryable } from '@postern/shared';
import type { Principal } from '../context.ts';
import type { ApiMetrics } from '../http/operation-metrics.ts';
import { authenticateBearer, bearerTokenOf } from './bearer-token.ts';

/** The limits, in one place (documented in docs/api/graphql.md). */
export const TOKEN_LOOKUP_LIMITS = {
  /** How long a request waits for a lookup slot: a lookup is one indexed row, about a millisecond,
   *  so a second is hundreds of lookups ahead of it. */
  waitMs: 1_000,
  /** The Retry-After of the 503 a request without a slot gets. */
  retryAfterSeconds: 1,
} as const;

/** A quarter of MAIL_POSTGRES_POOL_MAX, at least 1 (with a pool of 1 to 3 a lookup may hold it all). */
export function tokenLookupConcurrency(poolMax: number): number {
  return Math.max(1, Math.floor(poolMax / 4));
}

/** The principal of the header's token; null for no, unknown or revoked token; 'busy' when no
 *  lookup slot came free in time; 'gone' when `clientGone` was aborted before the lookup began
 *  (nobody is left to answer, so no lookup is run). `client` is the connection's remote address:
 *  waiting lookups take their turns per client network. */
export type TokenLookups = (authorization: string, client: string, clientGone?: AbortSignal) => Promise<Principal | null | 'busy' | 'gone'>;

export function createTokenLookups(db: Queryable, poolMax: number, metrics: Pick<ApiMetrics, 'tokenLookupsRefused' | 'tokenLookupsAbandoned'>): TokenLookups {
  const concurrency = tokenLookupConcurrency(poolMax);
  // One cap for every client together; alone, a client may use all of it.
  const slots = new LookupSlots(concurrency, concurrency);
  return async (authorization, client, clientGone) => {
    // A header that cannot hold a token is refused without a slot: only a lookup costs one.
    const token = bearerTokenOf(authorization);
    if (!token || !looksLikeApiToken(token)) return null;
    const release = await slots.acquire(clientNetworkKey(client), TOKEN_LOOKUP_LIMITS.waitMs, clientGone);
    // Gone while waiting, or just as the slot came free: a lookup would answer nobody.
    if (clientGone?.aborted) {
      release?.();
      metrics.tokenLookupsAbandoned.inc();
      return 'gone';
    }
    if (!release) {
      metrics.tokenLookupsRefused.inc();
      return 'busy';
    }
    try {
      return await authenticateBearer(db, authorization);
    } finally {
      release();
    }
  };
}
