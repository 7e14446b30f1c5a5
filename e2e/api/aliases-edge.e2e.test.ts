// An alias created through the API is accepted by a running edge on the very next RCPT, a disabled
// or deleted one is refused on the next — the API writes through the same shared alias code whose
// tables the edge reads (stale-alias-table: no generated files to go stale).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import type { TestDatabase } from '../harness/index.ts';
import { openSession, startTestEdge } from '../mta/helpers/edge.ts';
import type { SmtpTestClient } from '../mta/helpers/smtp-client.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;
let edge: Edge;
let admin: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-aliases'));
  edge = await startTestEdge(db.dsn);
  admin = await mintToken(db.pool, ['domains:write', 'aliases:write', 'aliases:read', 'domains:read']);
});

afterAll(() => closeApiFile(db, api, edge));

const CREATE_ALIAS_MESSAGE = `mutation($input: CreateAliasInput!) {
  createAlias(input: $input) { __typename ... on ValidationError { field code message } }
}`;

async function rcpt(client: SmtpTestClient, address: string): Promise<number> {
  return (await client.command(`RCPT TO:<${address}>`)).code;
}

const CREATE_ALIAS = `mutation($input: CreateAliasInput!) {
  createAlias(input: $input) {
    __typename
    ... on CreateAliasSuccess { data { id address kind enabled targets } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

describe('aliases through the API, seen by a running edge', () => {
  it('create → 250 on the next RCPT of the same session; disable → 550; delete → 550', async () => {
    const domain = await gqlData(api, admin, 'mutation { createDomain(name: "Edge.Example") { __typename ... on CreateDomainSuccess { data { name } } } }');
    expect(domain.createDomain.data.name).toBe('edge.example');

    const client = await openSession(edge);
    try {
      expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
      // Not yet an alias: authoritative 550 (the domain is ours).
      expect(await rcpt(client, 'sales@edge.example')).toBe(550);

      const created = await gqlData(api, admin, CREATE_ALIAS, {
        input: { domain: 'edge.example', localPart: 'Sales', kind: 'list', targets: ['A@Team.Test', 'b@team.test'] },
      });
      expect(created.createAlias).toMatchObject({
        __typename: 'CreateAliasSuccess',
        data: { address: 'sales@edge.example', kind: 'list', enabled: true, targets: ['a@team.test', 'b@team.test'] },
      });
      const id = created.createAlias.data.id as string;
      expect(await rcpt(client, 'sales@edge.example')).toBe(250);

      const disabled = await gqlData(api, admin, 'mutation($id: ID!) { updateAlias(input: { id: $id, enabled: false }) { __typename ... on UpdateAliasSuccess { data { enabled } } } }', { id });
      expect(disabled.updateAlias).toEqual({ __typename: 'UpdateAliasSuccess', data: { enabled: false } });
      expect(await rcpt(client, 'sales@edge.example')).toBe(550);

      await gqlData(api, admin, 'mutation($id: ID!) { updateAlias(input: { id: $id, enabled: true, targets: ["c@team.test"] }) { __typename } }', { id });
      expect(await rcpt(client, 'sales@edge.example')).toBe(250);
      const read = await gqlData(api, admin, 'query($id: ID!) { alias(id: $id) { targets enabled } }', { id });
      expect(read.alias).toEqual({ targets: ['c@team.test'], enabled: true });

      const deleted = await gqlData(api, admin, 'mutation($id: ID!) { deleteAlias(id: $id) { __typename ... on DeleteAliasSuccess { data { id } } } }', { id });
      expect(deleted.deleteAlias).toEqual({ __typename: 'DeleteAliasSuccess', data: { id } });
      expect(await rcpt(client, 'sales@edge.example')).toBe(550);

      const again = await gqlData(api, admin, 'mutation($id: ID!) { deleteAlias(id: $id) { __typename } }', { id });
      expect(again.deleteAlias.__typename).toBe('NotFoundError');
    } finally {
      client.close();
    }
  });

  it('a catch-all (localPart omitted) accepts any local part of its domain', async () => {
    await gqlData(api, admin, 'mutation { createDomain(name: "catchall.example") { __typename } }');
    const created = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'catchall.example', targets: ['all@team.test'] } });
    expect(created.createAlias.data.address).toBe('*@catchall.example');
    const client = await openSession(edge);
    try {
      expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
      expect(await rcpt(client, 'anything@catchall.example')).toBe(250);
    } finally {
      client.close();
    }
  });

  it('says what was wrong: unknown domain, invalid target address, duplicate alias, invalid domain', async () => {
    const unknownDomain = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'nope.example', localPart: 'x', targets: ['a@b.test'] } });
    expect(unknownDomain.createAlias).toMatchObject({ __typename: 'ValidationError', field: 'domain', code: 'UNKNOWN_DOMAIN' });
    expect(unknownDomain.createAlias.message).toContain('nope.example');

    await gqlData(api, admin, 'mutation { createDomain(name: "valid.example") { __typename } }');
    const badTarget = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'valid.example', localPart: 'x', targets: ['not-an-address'] } });
    expect(badTarget.createAlias).toMatchObject({ __typename: 'ValidationError', field: 'targets', code: 'INVALID_ADDRESS' });

    const first = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'valid.example', localPart: 'dup', targets: ['a@b.test'] } });
    expect(first.createAlias.__typename).toBe('CreateAliasSuccess');
    const dup = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'valid.example', localPart: 'DUP', targets: ['a@b.test'] } });
    expect(dup.createAlias).toMatchObject({ __typename: 'ConflictError' });
    expect(dup.createAlias.message).toContain('dup@valid.example');

    // A list of 1,001 members is refused whole, created or set; 1,000 are taken.
    await gqlData(api, admin, 'mutation { createDomain(name: "lists.example") { __typename } }');
    const members = (count: number) => Array.from({ length: count }, (_, index) => `member${index}@b.test`);
    const tooMany = await gql(api, admin, CREATE_ALIAS_MESSAGE, { input: { domain: 'lists.example', localPart: 'big', kind: 'list', targets: members(1001) } });
    expect(tooMany.body.data?.createAlias).toEqual({
      __typename: 'ValidationError',
      field: 'targets',
      code: 'INVALID_INPUT',
      message: 'targets: at most 1000 per alias, got 1001',
    });
    const big = await gqlData(api, admin, CREATE_ALIAS, { input: { domain: 'lists.example', localPart: 'big', kind: 'list', targets: members(1000) } });
    expect(big.createAlias.data.targets).toHaveLength(1000);
    const grown = await gqlData(api, admin, 'mutation($input: UpdateAliasInput!) { updateAlias(input: $input) { __typename ... on ValidationError { field code } } }', {
      input: { id: big.createAlias.data.id, targets: members(1001) },
    });
    expect(grown.updateAlias).toEqual({ __typename: 'ValidationError', field: 'targets', code: 'INVALID_INPUT' });
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM mail.alias_targets t JOIN mail.aliases a ON a.id = t.alias_id WHERE a.local_part = 'big'");
    expect(rows).toEqual([{ n: 1000 }]);

    const badDomain = await gql(api, admin, 'mutation { createDomain(name: "[127.0.0.1]") { __typename ... on ValidationError { field code message } } }');
    expect(badDomain.body.data?.createDomain).toMatchObject({ __typename: 'ValidationError', field: 'domain', code: 'INVALID_ADDRESS' });
  });

  it('lists domains and aliases with cursors', async () => {
    const page = await gqlData(api, admin, '{ domains(first: 100) { edges { node { name } } } aliases(domain: "valid.example") { edges { node { address } } } }');
    const names = page.domains.edges.map((edge: { node: { name: string } }) => edge.node.name);
    expect(names).toEqual(expect.arrayContaining(['edge.example', 'catchall.example', 'valid.example']));
    expect(page.aliases.edges.map((edge: { node: { address: string } }) => edge.node.address)).toEqual(['dup@valid.example']);
  });
});
