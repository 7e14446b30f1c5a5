// Reading and changing the route table (mail.routes), one implementation for every caller: the
// API's routes query and setRoute/deleteRoute mutations, and the engine's lookup at send time.
// Every input is checked and normalised first (route-rules.ts), so what is stored is only what the
// lookup can match; the table's CHECKs say the same again. A relay's password is stored sealed
// (route-credentials.ts) and read back only by the engine's lookup, never by the API's columns.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { fillMark } from '../db/sql-marks.ts';
import { type SecretsKey, SecretsKeyMissingError } from '../secrets/secrets-key.ts';
import { openRoutePassword, SealedRouteAuthError, sealRoutePassword } from './route-credentials.ts';
import {
  chooseRoute,
  type RouteAuth,
  type RouteRelay,
  type RouteRule,
  type RouteTlsPolicy,
  routeAuth,
  routeCandidates,
  routeDomain,
  routeRule,
} from './route-rules.ts';

/** A route as the API shows it. */
export interface RouteRecord {
  id: string;
  domain: string;
  /** "mx" or host:port. */
  relay: string;
  tls: RouteTlsPolicy;
  /** The username the engine authenticates to the relay with, or null (no AUTH); never the password. */
  authUsername: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export class RouteNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RouteNotFoundError';
  }
}

/** RouteRecord's columns of `mail.routes r`, for every statement that returns routes. */
export const ROUTE_COLUMNS = `r.id::text AS id, r.domain,
       CASE WHEN r.relay_host IS NULL THEN 'mx'
            WHEN strpos(r.relay_host, ':') > 0 THEN '[' || r.relay_host || ']:' || r.relay_port
            ELSE r.relay_host || ':' || r.relay_port END AS relay,
       r.tls, r.auth_username AS "authUsername", r.created_at AS "createdAt", r.updated_at AS "updatedAt"`;

function withColumns(template: string): string {
  return fillMark(template, 'ROUTE_COLUMNS', ROUTE_COLUMNS);
}

const UPSERT_ROUTE_SQL = withColumns(`
INSERT INTO mail.routes AS r (domain, relay_host, relay_port, tls, auth_username, auth_password_sealed)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (domain) DO UPDATE
   SET relay_host = EXCLUDED.relay_host, relay_port = EXCLUDED.relay_port, tls = EXCLUDED.tls,
       auth_username = EXCLUDED.auth_username, auth_password_sealed = EXCLUDED.auth_password_sealed,
       updated_at = now()
RETURNING /*ROUTE_COLUMNS*/`);

const DELETE_ROUTE_SQL = withColumns(`
DELETE FROM mail.routes r WHERE r.domain = $1
RETURNING /*ROUTE_COLUMNS*/`);

/** The routes that could match one recipient domain ($1: its candidates, route-rules.ts). */
const CANDIDATE_ROUTES_SQL = `
SELECT r.domain, r.relay_host AS "relayHost", r.relay_port AS "relayPort", r.tls,
       r.auth_username AS "authUsername", r.auth_password_sealed AS "authPasswordSealed"
  FROM mail.routes r
 WHERE r.domain = ANY($1::text[])`;

export interface NewRoute {
  domain: string;
  relay: string;
  tls: string;
  /** SMTP AUTH credentials for the relay; without them the route sends without AUTH. */
  auth?: RouteAuth | null;
}

/** Creates the route of `domain`, or replaces it whole (credentials too: a route set without them
 *  has none): its relay, TLS requirement and credentials take effect for the next send (within the
 *  engines' route cache, a few seconds). A password is sealed with `secretsKey` before it is stored;
 *  without the key, credentials are refused (SecretsKeyMissingError). */
export async function setRoute(db: Queryable, input: NewRoute, secretsKey: SecretsKey | null = null): Promise<RouteRecord> {
  const rule = routeRule(input);
  const auth = input.auth ? routeAuth(rule, input.auth) : null;
  if (auth && !secretsKey) throw new SecretsKeyMissingError('a route with credentials');
  const sealed = auth && secretsKey ? sealRoutePassword(secretsKey, rule.domain, auth.username, auth.password) : null;
  const host = rule.relay.kind === 'host' ? rule.relay.host : null;
  const port = rule.relay.kind === 'host' ? rule.relay.port : null;
  const { rows } = await db.query<RouteRecord>(UPSERT_ROUTE_SQL, [rule.domain, host, port, rule.tls, auth?.username ?? null, sealed]);
  return rows[0] as RouteRecord;
}

/** Removes the route of `domain` (written as it was set: ".example.com" for the parent route). */
export async function deleteRoute(db: Queryable, input: { domain: string }): Promise<RouteRecord> {
  const domain = routeDomain(input.domain);
  const deleted = (await db.query<RouteRecord>(DELETE_ROUTE_SQL, [domain])).rows[0];
  if (!deleted) throw new RouteNotFoundError(`there is no route for ${JSON.stringify(domain)}`);
  return deleted;
}

const ROUTES_WITH_CREDENTIALS_SQL = `
SELECT r.domain, r.auth_username AS "authUsername", r.auth_password_sealed AS "authPasswordSealed"
  FROM mail.routes r
 WHERE r.auth_username IS NOT NULL
 ORDER BY r.domain`;

/** The routes whose credentials `secretsKey` does not open (none set, or another value than the
 *  one they were sealed with), each with why: an engine sends none of their mail until it can. */
export async function unopenableRouteCredentials(db: Queryable, secretsKey: SecretsKey | null): Promise<Array<{ domain: string; why: string }>> {
  const { rows } = await db.query<{ domain: string; authUsername: string; authPasswordSealed: Buffer }>(ROUTES_WITH_CREDENTIALS_SQL);
  const unopenable: Array<{ domain: string; why: string }> = [];
  for (const row of rows) {
    try {
      openRoutePassword(secretsKey, row.domain, { username: row.authUsername, passwordSealed: row.authPasswordSealed });
    } catch (error) {
      if (!(error instanceof SealedRouteAuthError)) throw error;
      unopenable.push({ domain: row.domain, why: error.message });
    }
  }
  return unopenable;
}

interface CandidateRow {
  domain: string;
  relayHost: string | null;
  relayPort: number | null;
  tls: RouteTlsPolicy;
  authUsername: string | null;
  authPasswordSealed: Buffer | null;
}

/** The route mail to `recipientDomain` (normalised) takes now, or null for the default. */
export async function lookupRoute(db: Queryable, recipientDomain: string): Promise<RouteRule | null> {
  const { rows } = await db.query<CandidateRow>(CANDIDATE_ROUTES_SQL, [routeCandidates(recipientDomain)]);
  const rules: RouteRule[] = rows.map((row) => ({
    domain: row.domain,
    relay: row.relayHost === null ? { kind: 'mx' } : ({ kind: 'host', host: row.relayHost, port: row.relayPort ?? 25 } satisfies RouteRelay),
    tls: row.tls,
    ...(row.authUsername !== null && row.authPasswordSealed !== null ? { auth: { username: row.authUsername, passwordSealed: row.authPasswordSealed } } : {}),
  }));
  return chooseRoute(recipientDomain, rules);
}
