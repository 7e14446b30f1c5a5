// Per-domain routes (the route table, packages/shared/src/routes/): list them, set one (create or
// replace), delete one. The engine reads the table at send time and caches a domain's route for at
// most two seconds (docs/core.md, "Routes"). Scopes: routes:read, routes:write. A route's relay
// password is write-only: sealed with MAIL_SECRETS_KEY when set, never in an answer.
import {
  deleteRoute,
  fillMark,
  ROUTE_COLUMNS,
  ROUTE_TLS_POLICIES,
  RouteInputError,
  RouteNotFoundError,
  type RouteRecord,
  SecretsKeyMissingError,
  setRoute,
} from '@postern/shared';
import { GraphQLError } from 'graphql';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { NotFoundError, ValidationError } from './errors.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

interface RouteRow extends RouteRecord {
  cursorAt: string;
}

// The keyset parameters $1..$5 (pagination.ts).
const ROUTES_SQL: KeysetStatements = keysetStatements(
  { list: 'routes', idType: 'bigint' },
  fillMark(
    `
SELECT /*ROUTE_COLUMNS*/,
       to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"
  FROM mail.routes r
 WHERE ($1::timestamptz IS NULL OR (r.created_at, r.id) > ($1::timestamptz, $2::bigint))
   AND ($3::timestamptz IS NULL OR (r.created_at, r.id) < ($3::timestamptz, $4::bigint))
 ORDER BY r.created_at /*DIRECTION*/, r.id /*DIRECTION*/
 LIMIT $5`,
    'ROUTE_COLUMNS',
    ROUTE_COLUMNS,
  ),
);

const RouteTlsEnum = builder.enumType('RouteTls', {
  values: ROUTE_TLS_POLICIES,
  description:
    'opportunistic: STARTTLS whenever the relay offers it; a certificate that does not verify still encrypts. required: only over TLS (STARTTLS, or TLS from the start on port 465) with a certificate that verifies for the relay\'s name; otherwise the delivery is deferred, never sent in the clear. Routes to "mx" are opportunistic.',
});

export const RouteRef = builder.objectRef<RouteRecord>('Route');

RouteRef.implement({
  description: 'Where a recipient domain\'s mail goes instead of MAIL_SMTP_MODE\'s default.',
  fields: (t) => ({
    id: t.exposeID('id'),
    domain: t.exposeString('domain', {
      description: '"example.com": that domain only; ".example.com": every subdomain of example.com (not example.com itself). ASCII (IDNs as punycode), lower case.',
    }),
    relay: t.exposeString('relay', { description: '"mx" (the recipient domain\'s MX hosts) or the relay\'s host:port ([IPv6]:port).' }),
    tls: t.field({ type: RouteTlsEnum, resolve: (route) => route.tls }),
    authUsername: t.exposeString('authUsername', {
      nullable: true,
      description: 'The username the engine authenticates to the relay with (SMTP AUTH), or null: no AUTH. The password is never shown.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

/** The shared code's refusals as the API's typed errors, the input field named. */
async function withRouteErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof RouteInputError) throw new ValidationError(error.field, error.field === 'domain' ? 'INVALID_ADDRESS' : 'INVALID_INPUT', error.message);
    if (error instanceof RouteNotFoundError) throw new NotFoundError(error.message);
    if (error instanceof SecretsKeyMissingError) throw new GraphQLError(error.message, { extensions: { code: 'NOT_CONFIGURED' } });
    throw error;
  }
}

builder.queryFields((t) => ({
  routes: t.connection({
    type: RouteRef,
    authScopes: { scope: 'routes:read' },
    description: 'The route table, oldest route first. Match order: the exact domain, else the longest ".parent" route, else the default.',
    resolve: (_root, args, context) =>
      keysetConnection(args, ROUTES_SQL, [], async (text, values) => {
        const result = await context.db.query<RouteRow>(text, values);
        return result.rows;
      }),
  }),
}));

const RouteAuthInput = builder.inputType('RouteAuthInput', {
  description:
    'SMTP AUTH credentials for a route\'s relay. Only on a route to a relay host with tls REQUIRED: they are sent only over TLS with a certificate that verifies. The password is sealed with MAIL_SECRETS_KEY before it is stored and never shown again; without MAIL_SECRETS_KEY the mutation fails with NOT_CONFIGURED.',
  fields: (t) => ({
    username: t.string({ required: true, description: '1 to 255 characters, no control characters.' }),
    password: t.string({ required: true, description: '1 to 1,024 characters, no control characters.' }),
  }),
});

const SetRouteInput = builder.inputType('SetRouteInput', {
  fields: (t) => ({
    domain: t.string({ required: true, description: 'A recipient domain, e.g. example.com, or ".example.com" for its subdomains; IDNs are stored as punycode.' }),
    relay: t.string({ required: true, description: '"mx" (direct delivery to the domain\'s MX hosts) or host:port, e.g. tickets.internal.example:25 or [2001:db8::1]:25. A relay that wants SMTP AUTH gets `auth`.' }),
    tls: t.field({ type: RouteTlsEnum, required: false, defaultValue: 'opportunistic' }),
    auth: t.field({
      type: RouteAuthInput,
      required: false,
      description: 'Credentials for the relay; a route set without them has none (setting a route replaces it whole).',
    }),
  }),
});

builder.mutationFields((t) => ({
  setRoute: t.field({
    type: RouteRef,
    authScopes: { scope: 'routes:write' },
    description: 'Creates the route of a domain, or replaces it whole (its credentials too); engines use it for sends starting within two seconds.',
    errors: { types: INPUT_ERRORS, result: { name: 'SetRouteSuccess' }, union: { name: 'SetRouteResult' } },
    args: { input: t.arg({ type: SetRouteInput, required: true }) },
    resolve: (_root, { input }, context) =>
      withRouteErrors(() =>
        setRoute(context.db, { domain: input.domain, relay: input.relay, tls: input.tls ?? 'opportunistic', auth: input.auth ?? null }, context.secretsKey),
      ),
  }),
  deleteRoute: t.field({
    type: RouteRef,
    authScopes: { scope: 'routes:write' },
    description: 'Removes the route of a domain (".example.com" for a parent route): its mail takes the next matching route, or the default.',
    errors: { types: INPUT_ERRORS, result: { name: 'DeleteRouteSuccess' }, union: { name: 'DeleteRouteResult' } },
    args: { domain: t.arg.string({ required: true }) },
    resolve: (_root, args, context) => withRouteErrors(() => deleteRoute(context.db, { domain: args.domain })),
  }),
}));
