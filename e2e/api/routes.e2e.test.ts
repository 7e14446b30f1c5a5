// Routes through GraphQL, over HTTP against a real PostgreSQL: set (create and replace), list and
// delete; every hostile or malformed input refused with the field named and nothing stored; a
// relay's credentials sealed at rest, write-only, only with tls required and MAIL_SECRETS_KEY set;
// a token without routes:write changes nothing, one without routes:read reads nothing; and the
// route an attempt took readable on the Attempt, with attempts:read. (Whether the engine follows a
// route, and authenticates to its relay, is e2e/mx/routes.e2e.test.ts.)
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile, startTestApi } from './helpers/api.ts';
import { insertRenderedDelivery } from './helpers/deliveries.ts';

let db: TestDatabase;
let api: Api;
/** The same database through an API that has MAIL_SECRETS_KEY (`api` has none). */
let keyed: Api;
let writer: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-routes'));
  keyed = await startTestApi(db.dsn, { MAIL_SECRETS_KEY: randomBytes(32).toString('base64') });
  writer = await mintToken(db.pool, ['routes:read', 'routes:write']);
});

afterAll(() => closeApiFile(db, keyed, api));

const SET_ROUTE = `mutation($input: SetRouteInput!) {
  setRoute(input: $input) {
    __typename
    ... on SetRouteSuccess { data { id domain relay tls authUsername } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

const DELETE_ROUTE = `mutation($domain: String!) {
  deleteRoute(domain: $domain) {
    __typename
    ... on DeleteRouteSuccess { data { domain relay } }
    ... on Error { message }
  }
}`;

const ROUTES = '{ routes(first: 100) { edges { node { domain relay tls } } } }';

async function storedRoutes(): Promise<unknown[]> {
  const { rows } = await db.pool.query('SELECT domain, relay_host, relay_port, tls FROM mail.routes ORDER BY domain');
  return rows;
}

describe('routes through GraphQL', () => {
  it('sets, replaces, lists and deletes routes, normalising what it stores', async () => {
    const created = await gqlData(api, writer, SET_ROUTE, { input: { domain: 'Tickets.Example.TEST', relay: 'Helpdesk.Internal.test:2525', tls: 'required' } });
    expect(created.setRoute).toMatchObject({ __typename: 'SetRouteSuccess', data: { domain: 'tickets.example.test', relay: 'helpdesk.internal.test:2525', tls: 'required' } });
    const parent = await gqlData(api, writer, SET_ROUTE, { input: { domain: '.Bücher.test', relay: '[2001:DB8::25]:25' } });
    expect(parent.setRoute).toMatchObject({ data: { domain: '.xn--bcher-kva.test', relay: '[2001:db8::25]:25', tls: 'opportunistic' } });
    const replaced = await gqlData(api, writer, SET_ROUTE, { input: { domain: 'tickets.example.test', relay: 'mx' } });
    expect(replaced.setRoute).toMatchObject({ data: { id: created.setRoute.data.id, relay: 'mx', tls: 'opportunistic' } });
    const listed = await gqlData(api, writer, ROUTES);
    expect(listed.routes.edges.map((edge: { node: unknown }) => edge.node)).toEqual([
      { domain: 'tickets.example.test', relay: 'mx', tls: 'opportunistic' },
      { domain: '.xn--bcher-kva.test', relay: '[2001:db8::25]:25', tls: 'opportunistic' },
    ]);
    const deleted = await gqlData(api, writer, DELETE_ROUTE, { domain: '.BÜCHER.test' });
    expect(deleted.deleteRoute).toMatchObject({ __typename: 'DeleteRouteSuccess', data: { domain: '.xn--bcher-kva.test' } });
    const again = await gqlData(api, writer, DELETE_ROUTE, { domain: '.bücher.test' });
    expect(again.deleteRoute).toMatchObject({ __typename: 'NotFoundError' });
    await gqlData(api, writer, DELETE_ROUTE, { domain: 'tickets.example.test' });
    expect(await storedRoutes()).toEqual([]);
  });

  it.each([
    [{ domain: 'ex ample.test', relay: 'mx' }, 'domain', 'INVALID_ADDRESS', /U\+0020|" " \(U\+0020\)/],
    [{ domain: 'example.test\u0000', relay: 'mx' }, 'domain', 'INVALID_ADDRESS', /U\+0000/],
    [{ domain: '*.example.test', relay: 'mx' }, 'domain', 'INVALID_ADDRESS', /"\*"/],
    [{ domain: '.test', relay: 'mx' }, 'domain', 'INVALID_ADDRESS', /not fully qualified/],
    [{ domain: 'x'.repeat(5_000), relay: 'mx' }, 'domain', 'INVALID_ADDRESS', /longer than/],
    [{ domain: 'example.test', relay: 'relay.example.test' }, 'relay', 'INVALID_INPUT', /host:port/],
    [{ domain: 'example.test', relay: 'relay.example.test:70000' }, 'relay', 'INVALID_INPUT', /out of range/],
    [{ domain: 'example.test', relay: 'relay.example.test:25\r\nRCPT TO:<victim@example.test>' }, 'relay', 'INVALID_INPUT', /host:port/],
    [{ domain: 'example.test', relay: 'user:secret@relay.example.test:25' }, 'relay', 'INVALID_INPUT', /host:port/],
    [{ domain: 'example.test', relay: '2001:db8::1:25' }, 'relay', 'INVALID_INPUT', /host:port|brackets/],
    [{ domain: 'example.test', relay: 'mx', tls: 'required' }, 'tls', 'INVALID_INPUT', /relay host/],
  ])('setRoute(%j) is a ValidationError naming %s, and nothing is stored', async (input, field, code, reason) => {
    const answer = await gqlData(api, writer, SET_ROUTE, { input });
    expect(answer.setRoute).toMatchObject({ __typename: 'ValidationError', field, code });
    expect(answer.setRoute.message).toMatch(reason);
    expect(await storedRoutes()).toEqual([]);
  });

  it('an unknown TLS requirement is refused by the schema itself, naming the argument', async () => {
    const answer = await gql(api, writer, SET_ROUTE, { input: { domain: 'example.test', relay: 'mx', tls: 'sometimes' } });
    expect(answer.status).toBeLessThan(500);
    expect(answer.body.errors?.[0]?.message).toMatch(/tls/);
    expect(await storedRoutes()).toEqual([]);
  });
});

describe("a route's relay credentials", () => {
  const input = { domain: 'auth.example.test', relay: 'smarthost.example.test:587', tls: 'required', auth: { username: 'postern@example.test', password: 'correct horse battery staple' } };

  it('are stored sealed, shown only as the username, and gone when the route is set again without them', async () => {
    const set = await gqlData(keyed, writer, SET_ROUTE, { input });
    expect(set.setRoute).toMatchObject({ __typename: 'SetRouteSuccess', data: { domain: 'auth.example.test', tls: 'required', authUsername: 'postern@example.test' } });
    const { rows } = await db.pool.query<{ auth_username: string; sealed: Buffer }>(
      "SELECT auth_username, auth_password_sealed AS sealed FROM mail.routes WHERE domain = 'auth.example.test'",
    );
    expect(rows[0]?.auth_username).toBe('postern@example.test');
    expect(rows[0]?.sealed.toString('latin1')).not.toContain('correct horse');
    // No answer carries the password: the route as listed, the whole schema's Route type.
    const listed = await gqlData(keyed, writer, '{ routes(first: 10) { edges { node { domain relay tls authUsername createdAt updatedAt } } } }');
    expect(JSON.stringify(listed)).not.toContain('correct horse');
    expect(listed.routes.edges).toContainEqual({ node: expect.objectContaining({ domain: 'auth.example.test', authUsername: 'postern@example.test' }) });
    const replaced = await gqlData(keyed, writer, SET_ROUTE, { input: { ...input, auth: undefined } });
    expect(replaced.setRoute).toMatchObject({ data: { authUsername: null } });
    expect((await db.pool.query("SELECT auth_password_sealed FROM mail.routes WHERE domain = 'auth.example.test'")).rows).toEqual([{ auth_password_sealed: null }]);
    await gqlData(keyed, writer, DELETE_ROUTE, { domain: 'auth.example.test' });
  });

  it.each([
    [{ ...input, tls: 'opportunistic' }, /only over TLS with a certificate that verifies/],
    [{ ...input, relay: 'mx', tls: 'opportunistic' }, /relay host/],
    [{ ...input, auth: { username: 'postern', password: 'secret\r\nAUTH PLAIN' } }, /control characters/],
    [{ ...input, auth: { username: '', password: 'secret' } }, /username must be 1 to 255/],
    [{ ...input, auth: { username: 'postern', password: 'x'.repeat(5_000) } }, /password must be 1 to 1024/],
  ])('setRoute(%j) is a ValidationError naming auth, and nothing is stored', async (refused, reason) => {
    const answer = await gqlData(keyed, writer, SET_ROUTE, { input: refused });
    expect(answer.setRoute).toMatchObject({ __typename: 'ValidationError', field: 'auth', code: 'INVALID_INPUT' });
    expect(answer.setRoute.message).toMatch(reason);
    expect(JSON.stringify(answer)).not.toContain('secret');
    expect(await storedRoutes()).toEqual([]);
  });

  it('without MAIL_SECRETS_KEY: NOT_CONFIGURED naming it, and nothing is stored', async () => {
    const answer = await gql(api, writer, SET_ROUTE, { input });
    expect(answer.status).toBeLessThan(500);
    expect(answer.body.errors?.[0]).toMatchObject({ extensions: { code: 'NOT_CONFIGURED' }, message: expect.stringContaining('MAIL_SECRETS_KEY is not set') });
    expect(await storedRoutes()).toEqual([]);
  });
});

describe('scopes', () => {
  it('without routes:write: FORBIDDEN naming it, and nothing changes', async () => {
    await gqlData(api, writer, SET_ROUTE, { input: { domain: 'kept.example.test', relay: 'relay.example.test:25' } });
    for (const scopes of [['routes:read'], ['dkim:write'], ['aliases:write', 'domains:write']] as const) {
      const token = await mintToken(db.pool, [...scopes]);
      const set = await gql(api, token, SET_ROUTE, { input: { domain: 'kept.example.test', relay: 'evil.example.test:25' } });
      expect(set.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'routes:write' });
      const deleted = await gql(api, token, DELETE_ROUTE, { domain: 'kept.example.test' });
      expect(deleted.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'routes:write' });
    }
    expect(await storedRoutes()).toEqual([{ domain: 'kept.example.test', relay_host: 'relay.example.test', relay_port: 25, tls: 'opportunistic' }]);
  });

  it('reading routes needs routes:read; admin may do everything', async () => {
    const other = await mintToken(db.pool, ['routes:write']);
    expect((await gql(api, other, ROUTES)).body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'routes:read' });
    const admin = await mintToken(db.pool, ['admin']);
    expect((await gqlData(api, admin, ROUTES)).routes.edges).toHaveLength(1);
    expect((await gqlData(api, admin, DELETE_ROUTE, { domain: 'kept.example.test' })).deleteRoute.__typename).toBe('DeleteRouteSuccess');
  });
});

describe('the route an attempt took', () => {
  it('is on the Attempt, read-only, null where no route was recorded', async () => {
    const id = await insertRenderedDelivery(db.pool, 'someone@routed.example.test', { status: 'sent' });
    await db.pool.query(
      `INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, smtp_text, worker_id, started_at, finished_at, duration_ms,
                                  route_domain, route_relay, route_tls)
       VALUES ($1, 1, 'transport_failed', NULL, 'ECONNECTION: refused', 'w', now(), now(), 1, '.example.test', 'relay.example.test:2525', 'required'),
              ($1, 2, 'sent', 250, '250 ok', 'w', now(), now(), 1, NULL, NULL, NULL)`,
      [id],
    );
    const reader = await mintToken(db.pool, ['deliveries:read:any', 'attempts:read']);
    const answer = await gqlData(api, reader, 'query($id: ID!) { delivery(id: $id) { attempts { attemptNumber route { domain relay tls } } } }', { id });
    expect(answer.delivery.attempts).toEqual([
      { attemptNumber: 1, route: { domain: '.example.test', relay: 'relay.example.test:2525', tls: 'required' } },
      { attemptNumber: 2, route: null },
    ]);
  });
});
