// The authorisation matrix, for every mutation: no token and a revoked token are refused at the
// HTTP layer (401, nothing executed); a token without the scope gets FORBIDDEN naming the scope it
// lacks, and nothing changes; the right scope (and admin, which implies every scope) gets through.
import type { ApiScope } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { gql, mintRevokedToken, mintToken, startTestApi } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;

beforeAll(async () => {
  db = await createTestDatabase('api-authz');
  api = await startTestApi(db.dsn);
  await db.pool.query("INSERT INTO mail.domains (name) VALUES ('authz.test')");
});

afterAll(async () => {
  await api?.stop();
  await db?.drop();
});

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
