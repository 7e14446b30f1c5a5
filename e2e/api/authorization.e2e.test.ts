// The authorisation matrix, for every mutation: no token and a revoked token are refused at the
// HTTP layer (401, nothing executed); a token without the scope gets FORBIDDEN naming the scope it
// lacks, and nothing changes; the right scope (and admin, which implies every scope) gets through.
// Then the nested fields: each carries the scope of what it exposes, checked on the field itself,
// so every path that reaches it (a query, a list, a mutation's result, a `duplicate` answer) is
// refused for that field alone without the scope, and answered with it. (The deliveries those paths
// reach are put in the tables under a source no token sends as: an operator's `:any` scopes reach
// them; what a producer's own scopes reach is producer-reach.e2e.test.ts.)

import { randomUUID } from 'node:crypto';
import { type ApiScope, hashApiToken } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, type GraphqlResponse, gql, mintRevokedToken, mintToken, openApiFile } from './helpers/api.ts';
import { insertRenderedDelivery } from './helpers/deliveries.ts';

let db: TestDatabase;
let api: Api;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-authz'));
  await db.pool.query("INSERT INTO mail.domains (name) VALUES ('authz.test')");
  await db.pool.query("INSERT INTO mail.routes (domain, relay_host, relay_port) VALUES ('kept.authz.test', 'relay.authz.test', 25)");
});

afterAll(() => closeApiFile(db, api));

interface MutationCase {
  name: string;
  scope: ApiScope;
  /** A valid operation; each call gets a fresh `n` so repeats do not collide. */
  document: (n: number) => { query: string; variables: Record<string, unknown> };
  /** What a permitted call returns (the result union's member). */
  allowed: string[];
  /** The table the mutation changes and how to count its effect, to prove a refusal changed nothing. */
  effect: string;
}

const cases: MutationCase[] = [
  {
    name: 'createDomain',
    scope: 'domains:write',
    document: (n) => ({
      query: 'mutation($name: String!) { createDomain(name: $name) { __typename } }',
      variables: { name: `d${n}.authz.test` },
    }),
    allowed: ['CreateDomainSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.domains',
  },
  {
    name: 'createAlias',
    scope: 'aliases:write',
    document: (n) => ({
      query: 'mutation($input: CreateAliasInput!) { createAlias(input: $input) { __typename } }',
      variables: { input: { domain: 'authz.test', localPart: `a${n}`, targets: ['x@elsewhere.test'] } },
    }),
    allowed: ['CreateAliasSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.aliases',
  },
  {
    name: 'updateAlias',
    scope: 'aliases:write',
    document: () => ({
      query: 'mutation($input: UpdateAliasInput!) { updateAlias(input: $input) { __typename } }',
      variables: { input: { id: '999999', enabled: false } },
    }),
    allowed: ['NotFoundError'],
    effect: 'SELECT count(*)::int AS n FROM mail.aliases WHERE NOT enabled',
  },
  {
    name: 'deleteAlias',
    scope: 'aliases:write',
    document: () => ({ query: 'mutation { deleteAlias(id: "999999") { __typename } }', variables: {} }),
    allowed: ['NotFoundError'],
    effect: 'SELECT count(*)::int AS n FROM mail.aliases',
  },
  {
    name: 'sendEmail',
    scope: 'send',
    document: (n) => ({
      query: 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { __typename } }',
      variables: { input: { to: 'someone@authz.test', idempotencyKey: `k${n}`, rendered: { subject: 'hi', text: 'hello' } } },
    }),
    allowed: ['SendEmailSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.deliveries',
  },
  {
    name: 'requeueDeadLetter',
    scope: 'deliveries:write',
    document: () => ({
      query: 'mutation { requeueDeadLetter(input: { filter: {}, max: 5 }) { __typename } }',
      variables: {},
    }),
    allowed: ['RequeueDeadLetterSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.dead_letters WHERE requeued_at IS NOT NULL',
  },
  {
    name: 'cancelDelivery',
    scope: 'deliveries:write',
    document: () => ({
      query: 'mutation { cancelDelivery(id: "00000000-0000-4000-8000-000000000000") { __typename } }',
      variables: {},
    }),
    allowed: ['NotFoundError'],
    effect: "SELECT count(*)::int AS n FROM mail.deliveries WHERE status = 'cancelled'",
  },
  {
    name: 'addSuppression',
    scope: 'suppressions:write',
    document: (n) => ({
      query: 'mutation($input: AddSuppressionInput!) { addSuppression(input: $input) { __typename } }',
      variables: { input: { address: `s${n}@authz.test` } },
    }),
    allowed: ['AddSuppressionSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.suppressions',
  },
  {
    name: 'setRoute',
    scope: 'routes:write',
    document: (n) => ({
      query: 'mutation($input: SetRouteInput!) { setRoute(input: $input) { __typename } }',
      variables: { input: { domain: `r${n}.authz.test`, relay: 'relay.authz.test:25' } },
    }),
    allowed: ['SetRouteSuccess'],
    effect: 'SELECT count(*)::int AS n FROM mail.routes',
  },
  {
    name: 'deleteRoute',
    scope: 'routes:write',
    document: () => ({ query: 'mutation { deleteRoute(domain: "kept.authz.test") { __typename } }', variables: {} }),
    // The route is deleted by the first permitted call; the second finds none.
    allowed: ['DeleteRouteSuccess', 'NotFoundError'],
    effect: 'SELECT count(*)::int AS n FROM mail.routes',
  },
  {
    name: 'removeSuppression',
    scope: 'suppressions:write',
    document: () => ({ query: 'mutation { removeSuppression(address: "nobody@authz.test") { __typename } }', variables: {} }),
    allowed: ['NotFoundError'],
    effect: 'SELECT count(*)::int AS n FROM mail.suppressions',
  },
];

async function effectCount(sql: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(sql);
  return rows[0]?.n ?? 0;
}

/** A scope that is not the required one (nor admin): the wrong-scope token. */
function otherScope(scope: ApiScope): ApiScope {
  return scope === 'deliveries:read' ? 'aliases:read' : 'deliveries:read';
}

let counter = 0;

describe.each(cases)('$name', (mutation) => {
  it('without a token: 401 and nothing changes', async () => {
    const before = await effectCount(mutation.effect);
    const { query, variables } = mutation.document(++counter);
    const answer = await gql(api, null, query, variables);
    expect(answer.status).toBe(401);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(await effectCount(mutation.effect)).toBe(before);
  });

  it('with a revoked token (that had the scope): 401 and nothing changes', async () => {
    const token = await mintRevokedToken(db.pool, [mutation.scope]);
    const before = await effectCount(mutation.effect);
    const { query, variables } = mutation.document(++counter);
    const answer = await gql(api, token, query, variables);
    expect(answer.status).toBe(401);
    expect(await effectCount(mutation.effect)).toBe(before);
  });

  it(`without the scope: FORBIDDEN naming "${mutation.scope}", and nothing changes`, async () => {
    const token = await mintToken(db.pool, [otherScope(mutation.scope)]);
    const before = await effectCount(mutation.effect);
    const { query, variables } = mutation.document(++counter);
    const answer = await gql(api, token, query, variables);
    expect(answer.status).toBe(200);
    expect(answer.body.data?.[mutation.name] ?? null).toBeNull();
    expect(answer.body.errors).toHaveLength(1);
    expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: mutation.scope });
    expect(answer.body.errors?.[0]?.message).toContain(mutation.scope);
    expect(await effectCount(mutation.effect)).toBe(before);
  });

  it.each([['the scope'], ['admin']])('with %s: allowed', async (which) => {
    const token = await mintToken(db.pool, [which === 'admin' ? 'admin' : mutation.scope]);
    const { query, variables } = mutation.document(++counter);
    const answer = await gql<Record<string, { __typename: string }>>(api, token, query, variables);
    expect(answer.status).toBe(200);
    expect(answer.body.errors).toBeUndefined();
    expect(mutation.allowed).toContain(answer.body.data?.[mutation.name]?.__typename);
  });
});

describe('queries', () => {
  it('need their read scope; a write scope of another area is not enough', async () => {
    const token = await mintToken(db.pool, ['aliases:write']);
    const answer = await gql(api, token, '{ deliveries(first: 1) { edges { node { id } } } }');
    expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'deliveries:read' });
    const reader = await mintToken(db.pool, ['deliveries:read']);
    const allowed = await gql(api, reader, '{ deliveries(first: 1) { edges { node { id } } } }');
    expect(allowed.body.errors).toBeUndefined();
  });

  it('a token that is not ours at all (well-formed, unknown) is a 401', async () => {
    const answer = await gql(api, `pst_${'A'.repeat(43)}`, '{ queueStats { deadLettersLast24h } }');
    expect(answer.status).toBe(401);
  });
});

// ---- nested fields ----

type Holder = 'Delivery' | 'DeadLetter' | 'MalformedCommand';

interface NestedField {
  holder: Holder;
  field: string;
  selection: string;
  scope: ApiScope;
}

const NESTED_FIELDS: NestedField[] = [
  { holder: 'Delivery', field: 'attempts', selection: 'attempts { id smtpText }', scope: 'attempts:read' },
  { holder: 'Delivery', field: 'subject', selection: 'subject', scope: 'content:read' },
  { holder: 'DeadLetter', field: 'lastAttempt', selection: 'lastAttempt { id smtpText }', scope: 'attempts:read' },
  { holder: 'MalformedCommand', field: 'raw', selection: 'raw', scope: 'commands:raw:read' },
];

interface NestedPath {
  holder: Holder;
  name: string;
  /** What the path itself needs. */
  scopes: ApiScope[];
  /** A fresh target for one call (some calls change it: a cancel, a requeue, a first send). */
  prepare: (token: string) => Promise<Record<string, string>>;
  /** The operation, selecting `selection` (plus `id`) on the holder. */
  document: (selection: string, target: Record<string, string>) => { query: string; variables: Record<string, unknown> };
  /** The one holder object in the answer's data. */
  pick: (data: Record<string, unknown>) => Record<string, unknown> | null | undefined;
}

const recipientFor = () => `nested-${randomUUID().slice(0, 8)}@authz.test`;

async function deadLetter(): Promise<Record<string, string>> {
  const recipient = recipientFor();
  return { id: await insertRenderedDelivery(db.pool, recipient, { status: 'dead_letter' }), recipient };
}

// biome-ignore lint/suspicious/noExplicitAny: the answer is read loosely; a wrong shape fails the expect.
const first = (connection: any) => connection?.edges?.[0]?.node;

/** A refused sendEmail of `source` whose raw text holds a login code. */
async function refusedCommandOf(source: string): Promise<Record<string, string>> {
  await db.pool.query(
    `INSERT INTO mail.malformed_commands (channel, failure_code, failure_detail, source, raw)
     VALUES ('api', 'missing_variable', 'template "login-code" requires "expiresInMinutes"', $1, $2)`,
    [source, JSON.stringify({ source, variables: { code: '493817' } })],
  );
  return { source };
}

function refusedCommandsOf(selection: string, target: Record<string, string>): { query: string; variables: Record<string, unknown> } {
  return {
    query: `query($s: String!) { malformedCommands(first: 5, filter: { source: $s }) { edges { node { id failureCode ${selection} } } } }`,
    variables: { s: target.source },
  };
}

const NESTED_PATHS: NestedPath[] = [
  {
    holder: 'Delivery',
    name: 'delivery(id)',
    scopes: ['deliveries:read:any'],
    prepare: deadLetter,
    document: (selection, target) => ({ query: `query($id: ID!) { delivery(id: $id) { id ${selection} } }`, variables: { id: target.id } }),
    pick: (data) => data.delivery as Record<string, unknown>,
  },
  {
    holder: 'Delivery',
    name: 'deliveries (a list)',
    scopes: ['deliveries:read:any'],
    prepare: deadLetter,
    document: (selection, target) => ({
      query: `query($r: String!) { deliveries(first: 5, filter: { recipient: $r }) { edges { node { id ${selection} } } } }`,
      variables: { r: target.recipient },
    }),
    pick: (data) => first(data.deliveries),
  },
  {
    holder: 'Delivery',
    name: 'deadLetters { delivery }',
    scopes: ['deliveries:read:any'],
    prepare: deadLetter,
    document: (selection, target) => ({
      query: `query($r: String!) { deadLetters(first: 5, filter: { recipient: $r }) { edges { node { id delivery { id ${selection} } } } } }`,
      variables: { r: target.recipient },
    }),
    pick: (data) => first(data.deadLetters)?.delivery,
  },
  {
    holder: 'Delivery',
    name: 'sendEmail (a duplicate answer)',
    scopes: ['send'],
    prepare: async (token) => {
      const input = { to: recipientFor(), idempotencyKey: randomUUID(), rendered: { subject: 'login code 493817', text: 'code 493817' } };
      const created = await gql(api, token, 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { __typename } }', { input });
      expect(created.body.data).toEqual({ sendEmail: { __typename: 'SendEmailSuccess' } });
      return { input: JSON.stringify(input) };
    },
    document: (selection, target) => ({
      query: `mutation($input: SendEmailInput!) { sendEmail(input: $input) { ... on SendEmailSuccess { data { duplicate delivery { id ${selection} } } } } }`,
      variables: { input: JSON.parse(target.input as string) },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    pick: (data) => (data.sendEmail as any)?.data?.delivery,
  },
  {
    holder: 'Delivery',
    name: 'cancelDelivery',
    scopes: ['deliveries:write:any'],
    prepare: async () => ({ id: await insertRenderedDelivery(db.pool, recipientFor(), { status: 'queued', dueInSeconds: 3600 }) }),
    document: (selection, target) => ({
      query: `mutation($id: ID!) { cancelDelivery(id: $id) { ... on CancelDeliverySuccess { data { id ${selection} } } } }`,
      variables: { id: target.id },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    pick: (data) => (data.cancelDelivery as any)?.data,
  },
  {
    holder: 'Delivery',
    name: 'requeueDeadLetter',
    scopes: ['deliveries:write:any'],
    prepare: deadLetter,
    document: (selection, target) => ({
      query: `mutation($id: ID!) { requeueDeadLetter(input: { deliveryId: $id }) { ... on RequeueDeadLetterSuccess { data { deliveries { id ${selection} } } } } }`,
      variables: { id: target.id },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    pick: (data) => (data.requeueDeadLetter as any)?.data?.deliveries?.[0],
  },
  {
    holder: 'DeadLetter',
    name: 'deadLetters (a list)',
    scopes: ['deliveries:read:any'],
    prepare: deadLetter,
    document: (selection, target) => ({
      query: `query($r: String!) { deadLetters(first: 5, filter: { recipient: $r }) { edges { node { id ${selection} } } } }`,
      variables: { r: target.recipient },
    }),
    pick: (data) => first(data.deadLetters),
  },
  {
    holder: 'DeadLetter',
    name: 'delivery(id) { deadLetter }',
    scopes: ['deliveries:read:any'],
    prepare: deadLetter,
    document: (selection, target) => ({
      query: `query($id: ID!) { delivery(id: $id) { id deadLetter { id ${selection} } } }`,
      variables: { id: target.id },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    pick: (data) => (data.delivery as any)?.deadLetter,
  },
  {
    holder: 'MalformedCommand',
    name: 'malformedCommands (a list)',
    scopes: ['queue:read'],
    prepare: () => refusedCommandOf(`nested-${randomUUID().slice(0, 8)}`),
    document: refusedCommandsOf,
    pick: (data) => first(data.malformedCommands),
  },
  {
    // A producer's token reads its own producer's refused commands (deliveries:read): their raw
    // text needs the nested scope all the same.
    holder: 'MalformedCommand',
    name: "malformedCommands (a producer's own)",
    scopes: ['deliveries:read'],
    prepare: async (token) => {
      const { rows } = await db.pool.query<{ producer: string }>('SELECT producer FROM mail.api_tokens WHERE token_hash = $1', [hashApiToken(token)]);
      return refusedCommandOf(rows[0]?.producer as string);
    },
    document: refusedCommandsOf,
    pick: (data) => first(data.malformedCommands),
  },
];

const NESTED_CASES = NESTED_FIELDS.flatMap((field) =>
  NESTED_PATHS.filter((path) => path.holder === field.holder).map((path) => ({ ...field, path, label: `${field.holder}.${field.field} through ${path.name}` })),
);

async function nestedCall(path: NestedPath, field: NestedField, scopes: ApiScope[]): Promise<GraphqlResponse> {
  const token = await mintToken(db.pool, scopes);
  const target = await path.prepare(token);
  const { query, variables } = path.document(field.selection, target);
  return gql(api, token, query, variables);
}

describe.each(NESTED_CASES)('$label', (nested) => {
  it(`with only the path's scope: that field alone is null, FORBIDDEN naming "${nested.scope}"`, async () => {
    const answer = await nestedCall(nested.path, nested, nested.path.scopes);
    expect(answer.status).toBe(200);
    const holder = nested.path.pick(answer.body.data ?? {});
    expect(holder, JSON.stringify(answer.body)).toBeTruthy();
    expect(holder?.id).toBeTruthy();
    expect(holder?.[nested.field]).toBeNull();
    expect(answer.body.errors).toHaveLength(1);
    expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: nested.scope });
    expect((answer.body.errors?.[0] as { path?: unknown[] } | undefined)?.path?.at(-1)).toBe(nested.field);
    // What the field hides is nowhere in the answer.
    expect(JSON.stringify(answer.body)).not.toMatch(/493817|try later|login code|body of the test mail/);
  });

  it.each([['its scope'], ['admin']])('with %s: answered', async (which) => {
    const scopes: ApiScope[] = which === 'admin' ? ['admin'] : [...nested.path.scopes, nested.scope];
    const answer = await nestedCall(nested.path, nested, scopes);
    expect(answer.body.errors).toBeUndefined();
    const holder = nested.path.pick(answer.body.data ?? {});
    expect(holder?.[nested.field]).not.toBeNull();
    expect(holder?.[nested.field]).toBeDefined();
  });
});
