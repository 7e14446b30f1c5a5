// Alias loops: refused when an alias is created or edited, through the shared alias code and through
// the API; and a loop that the data already holds (written with psql) neither hangs the check nor
// the edge's lookup, which expands one level only (the hop limit cuts such a loop in SMTP).
import { AliasCycleError, createAlias, createDomain, deleteAlias, normalizeAddress, resolveRecipient, setAliasTargets } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gqlData, mintToken, openApiFile } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;
let admin: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-alias-loops'));
  admin = await mintToken(db.pool, ['admin']);
  await createDomain(db.pool, 'loop.test');
  await createDomain(db.pool, 'other.test');
  await createDomain(db.pool, 'catch.test');
  await createDomain(db.pool, 'psql.test');
});

afterAll(() => closeApiFile(db, api));

async function refusedWith(work: Promise<unknown>): Promise<AliasCycleError> {
  const error = await work.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AliasCycleError);
  return error as AliasCycleError;
}

const CREATE_ALIAS = `mutation($input: CreateAliasInput!) {
  createAlias(input: $input) {
    __typename
    ... on CreateAliasSuccess { data { id address } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

const UPDATE_ALIAS = `mutation($input: UpdateAliasInput!) {
  updateAlias(input: $input) {
    __typename
    ... on UpdateAliasSuccess { data { targets } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

describe('alias loops refused at creation', () => {
  it('an alias that targets itself', async () => {
    const error = await refusedWith(createAlias(db.pool, { domain: 'loop.test', localPart: 'self', kind: 'forward', targets: ['Self@Loop.test'] }));
    expect(error.cycle).toEqual(['self@loop.test', 'self@loop.test']);
    expect(error.message).toMatch(/alias loop: self@loop\.test/);
  });

  it('two aliases that target each other, the second refused, naming both', async () => {
    await createAlias(db.pool, { domain: 'loop.test', localPart: 'a', kind: 'forward', targets: ['b@other.test', 'out@elsewhere.test'] });
    const error = await refusedWith(createAlias(db.pool, { domain: 'other.test', localPart: 'b', kind: 'list', targets: ['x@elsewhere.test', 'a@loop.test'] }));
    expect(error.cycle).toEqual(['b@other.test', 'a@loop.test', 'b@other.test']);
  });

  it('three steps, one of them through a catch-all', async () => {
    // c@loop.test -> anything@catch.test (the catch-all) -> d@loop.test -> c@loop.test
    await createAlias(db.pool, { domain: 'catch.test', localPart: null, kind: 'forward', targets: ['d@loop.test'] });
    await createAlias(db.pool, { domain: 'loop.test', localPart: 'd', kind: 'forward', targets: ['c@loop.test'] });
    const error = await refusedWith(createAlias(db.pool, { domain: 'loop.test', localPart: 'c', kind: 'forward', targets: ['whoever@catch.test'] }));
    expect(error.cycle).toEqual(['c@loop.test', 'whoever@catch.test', 'd@loop.test', 'c@loop.test']);
  });

  it('a catch-all that would receive its own targets', async () => {
    await createDomain(db.pool, 'star.test');
    const error = await refusedWith(createAlias(db.pool, { domain: 'star.test', localPart: null, kind: 'forward', targets: ['anyone@star.test'] }));
    expect(error.cycle).toEqual(['*@star.test', 'anyone@star.test', '*@star.test']);
    // An exact alias of the same domain takes its address before the catch-all: no loop.
    await createAlias(db.pool, { domain: 'star.test', localPart: 'desk', kind: 'forward', targets: ['desk@elsewhere.test'] });
    await expect(createAlias(db.pool, { domain: 'star.test', localPart: null, kind: 'forward', targets: ['desk@star.test'] })).resolves.toMatchObject({
      localPart: null,
    });
  });

  it('a disabled alias still counts: enabling it later must not close a loop', async () => {
    await createAlias(db.pool, { domain: 'loop.test', localPart: 'off', kind: 'forward', targets: ['on@loop.test'], enabled: false });
    const error = await refusedWith(createAlias(db.pool, { domain: 'loop.test', localPart: 'on', kind: 'forward', targets: ['off@loop.test'] }));
    expect(error.cycle).toEqual(['on@loop.test', 'off@loop.test', 'on@loop.test']);
  });
});

describe('concurrent writes', () => {
  it('two halves of a loop written at the same moment: exactly one is refused, every time', async () => {
    for (let round = 0; round < 10; round += 1) {
      const [first, second] = await Promise.allSettled([
        createAlias(db.pool, { domain: 'loop.test', localPart: `race${round}a`, kind: 'forward', targets: [`race${round}b@loop.test`] }),
        createAlias(db.pool, { domain: 'loop.test', localPart: `race${round}b`, kind: 'forward', targets: [`race${round}a@loop.test`] }),
      ]);
      const outcomes = [first, second].map((outcome) => outcome.status);
      expect(outcomes.sort(), `round ${round}`).toEqual(['fulfilled', 'rejected']);
      const refusal = [first, second].find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult;
      expect(refusal.reason).toBeInstanceOf(AliasCycleError);
    }
  });
});

describe('alias loops refused when an alias is edited', () => {
  it('setAliasTargets that would close a loop changes nothing', async () => {
    await createAlias(db.pool, { domain: 'loop.test', localPart: 'e1', kind: 'forward', targets: ['e2@loop.test'] });
    await createAlias(db.pool, { domain: 'loop.test', localPart: 'e2', kind: 'forward', targets: ['out@elsewhere.test'] });
    const error = await refusedWith(setAliasTargets(db.pool, { domain: 'loop.test', localPart: 'e2' }, ['e1@loop.test']));
    expect(error.cycle).toEqual(['e2@loop.test', 'e1@loop.test', 'e2@loop.test']);
    const stored = await resolveRecipient(db.pool, normalizeAddress('e2@loop.test'));
    expect(stored).toMatchObject({ status: 'accepted', targets: ['out@elsewhere.test'] });
  });
});

describe('alias loops refused when an alias is deleted', () => {
  it('deleting an exact alias whose address would fall to a loop-closing catch-all changes nothing', async () => {
    // *@fall.test -> z@other.test -> keep@fall.test (exact, to the outside). Delete keep@fall.test
    // and z@other.test's target falls to the catch-all: *@fall.test -> z@other.test -> *@fall.test.
    await createDomain(db.pool, 'fall.test');
    await createAlias(db.pool, { domain: 'fall.test', localPart: 'keep', kind: 'forward', targets: ['out@elsewhere.test'] });
    await createAlias(db.pool, { domain: 'other.test', localPart: 'z', kind: 'forward', targets: ['keep@fall.test'] });
    await createAlias(db.pool, { domain: 'fall.test', localPart: null, kind: 'forward', targets: ['z@other.test'] });
    const error = await refusedWith(deleteAlias(db.pool, { domain: 'fall.test', localPart: 'keep' }));
    expect(error.cycle).toEqual(['*@fall.test', 'z@other.test', 'keep@fall.test', '*@fall.test']);
    expect(await resolveRecipient(db.pool, normalizeAddress('keep@fall.test'))).toMatchObject({ status: 'accepted', targets: ['out@elsewhere.test'] });
    // Deleting an alias nothing falls through to is fine.
    await expect(deleteAlias(db.pool, { domain: 'other.test', localPart: 'z' })).resolves.toBe(true);
  });
});

describe('through the API', () => {
  it('createAlias and updateAlias answer a ValidationError ALIAS_LOOP naming the loop', async () => {
    const first = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'loop.test', localPart: 'api1', targets: ['api2@loop.test'] } });
    expect(first.createAlias.__typename).toBe('CreateAliasSuccess');
    const second = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'loop.test', localPart: 'api2', targets: ['API1@loop.test'] } });
    expect(second.createAlias).toMatchObject({ __typename: 'ValidationError', field: 'targets', code: 'ALIAS_LOOP' });
    expect(second.createAlias.message).toContain('api2@loop.test -> api1@loop.test -> api2@loop.test');

    const self = await gqlData(api, admin, UPDATE_ALIAS, { input: { id: first.createAlias.data.id, targets: ['api1@loop.test'] } });
    expect(self.updateAlias).toMatchObject({ __typename: 'ValidationError', field: 'targets', code: 'ALIAS_LOOP' });
  });
});

describe('a loop already in the data (written with psql)', () => {
  beforeAll(async () => {
    // p1 -> p2 -> p1, bypassing every check.
    await db.pool.query(`
      WITH d AS (SELECT id FROM mail.domains WHERE name = 'psql.test'),
           a AS (INSERT INTO mail.aliases (domain_id, local_part, kind, enabled)
                 SELECT d.id, lp, 'forward', true FROM d, unnest(ARRAY['p1', 'p2']) AS lp RETURNING id, local_part)
      INSERT INTO mail.alias_targets (alias_id, address)
      SELECT a.id, CASE a.local_part WHEN 'p1' THEN 'p2@psql.test' ELSE 'p1@psql.test' END FROM a`);
  });

  it('the check still ends: an alias pointing into the loop is not itself in it, and is accepted', async () => {
    const alias = await createAlias(db.pool, { domain: 'loop.test', localPart: 'into', kind: 'forward', targets: ['p1@psql.test'] });
    expect(alias.targets).toEqual(['p1@psql.test']);
  });

  it('editing a member of the loop is refused, naming the loop', async () => {
    const error = await refusedWith(setAliasTargets(db.pool, { domain: 'psql.test', localPart: 'p1' }, ['p2@psql.test', 'new@elsewhere.test']));
    expect(error.cycle).toEqual(['p1@psql.test', 'p2@psql.test', 'p1@psql.test']);
  });

  it("the edge's lookup expands one level: it answers, with the member's own targets", async () => {
    const resolution = await resolveRecipient(db.pool, normalizeAddress('p1@psql.test'));
    expect(resolution).toMatchObject({ status: 'accepted', targets: ['p2@psql.test'] });
  });
});
