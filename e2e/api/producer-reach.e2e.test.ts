// Producers isolated on reads and changes, not only on sends: a producer's token with
// `deliveries:read` / `deliveries:write` lists, reads, cancels and requeues its own producer's
// deliveries only. Another producer's delivery is answered exactly as one that does not exist; a
// filter naming another producer is FORBIDDEN, naming the scope that would allow it. The `:any`
// forms (an operator's) and `admin` reach every producer's. Everything is checked against the
// tables: what a refused call would have changed is still as it was.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile } from './helpers/api.ts';
import { insertRenderedDelivery } from './helpers/deliveries.ts';

let db: TestDatabase;
let api: Api;
/** Tokens of two producers, each with both delivery scopes, and an operator's. */
let billing: string;
let crm: string;
let operator: string;

/** One producer's deliveries: a queued one (due in an hour) and two dead letters. */
interface Mail {
  queued: string;
  deadLetters: string[];
  recipients: string[];
}
const mail: Record<'billing' | 'crm', Mail> = {
  billing: { queued: '', deadLetters: [], recipients: [] },
  crm: { queued: '', deadLetters: [], recipients: [] },
};

async function insertMailOf(producer: 'billing' | 'crm'): Promise<void> {
  const to = () => {
    const recipient = `${producer}-${randomUUID().slice(0, 8)}@customers.test`;
    mail[producer].recipients.push(recipient);
    return recipient;
  };
  mail[producer].queued = await insertRenderedDelivery(db.pool, to(), { status: 'queued', dueInSeconds: 3600 }, producer);
  for (let n = 0; n < 2; n++) mail[producer].deadLetters.push(await insertRenderedDelivery(db.pool, to(), { status: 'dead_letter' }, producer));
}

async function statusOf(id: string): Promise<string | undefined> {
  const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM mail.deliveries WHERE id = $1', [id]);
  return rows[0]?.status;
}

const LIST = `query($filter: DeliveryFilter) { deliveries(first: 50, filter: $filter) { edges { node { id source } } } }`;
const DEAD_LETTERS = `query($filter: DeadLetterFilter) { deadLetters(first: 50, filter: $filter) { edges { node { id delivery { id source } } } } }`;
const ONE = 'query($id: ID!) { delivery(id: $id) { id source status } }';
const CANCEL = 'mutation($id: ID!) { cancelDelivery(id: $id) { __typename ... on Error { message } ... on CancelDeliverySuccess { data { id status } } } }';
const REQUEUE = `mutation($input: RequeueDeadLetterInput!) {
  requeueDeadLetter(input: $input) { __typename ... on Error { message } ... on RequeueDeadLetterSuccess { data { count deliveries { id } } } }
}`;

// biome-ignore lint/suspicious/noExplicitAny: the answers are read loosely; a wrong shape fails the expect.
const ids = (connection: any): string[] => connection.edges.map((edge: any) => edge.node.id).sort();
// biome-ignore lint/suspicious/noExplicitAny: read loosely.
const deliveryIds = (connection: any): string[] => connection.edges.map((edge: any) => edge.node.delivery.id).sort();
const sorted = (list: string[]) => [...list].sort();

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-producer-reach'));
  billing = await mintToken(db.pool, ['send', 'deliveries:read', 'deliveries:write'], 'billing-service', 'billing');
  crm = await mintToken(db.pool, ['send', 'deliveries:read', 'deliveries:write'], 'crm-service', 'crm');
  operator = await mintToken(db.pool, ['deliveries:read:any', 'deliveries:write:any'], 'oncall');
  await insertMailOf('billing');
  await insertMailOf('crm');
  // Mail no token sends as: the edge's.
  await insertRenderedDelivery(db.pool, `inbound-${randomUUID().slice(0, 8)}@customers.test`, { status: 'queued', dueInSeconds: 3600 }, 'smtp');
});

afterAll(() => closeApiFile(db, api));

describe("a producer's token reads its own producer's deliveries only", () => {
  it('deliveries: the list holds its own and nothing else; naming its own producer is the same list', async () => {
    const own = sorted([mail.billing.queued, ...mail.billing.deadLetters]);
    expect(ids((await gqlData(api, billing, LIST, {})).deliveries)).toEqual(own);
    expect(ids((await gqlData(api, billing, LIST, { filter: { source: 'billing' } })).deliveries)).toEqual(own);
    expect(ids((await gqlData(api, crm, LIST, {})).deliveries)).toEqual(sorted([mail.crm.queued, ...mail.crm.deadLetters]));
  });

  it("a filter naming another producer, or the edge's mail, is FORBIDDEN and names the scope that would allow it", async () => {
    for (const source of ['crm', 'smtp']) {
      for (const [query, filter] of [
        [LIST, { source }],
        [DEAD_LETTERS, { source }],
      ] as const) {
        const answer = await gql(api, billing, query, { filter });
        expect(answer.body.data).toBeNull();
        expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'filter.source', producer: 'billing', requiredScope: 'deliveries:read:any' });
        expect(JSON.stringify(answer.body)).not.toContain(mail.crm.queued);
      }
    }
  });

  it("delivery(id): another producer's is null without an error, exactly as an id that is no delivery's", async () => {
    const other = await gql(api, billing, ONE, { id: mail.crm.queued });
    const none = await gql(api, billing, ONE, { id: randomUUID() });
    expect(other.body).toEqual({ data: { delivery: null } });
    expect(none.body).toEqual(other.body);
    expect((await gqlData(api, billing, ONE, { id: mail.billing.queued })).delivery).toMatchObject({ id: mail.billing.queued, source: 'billing' });
  });

  it('deadLetters: its own only, and filtered further as asked', async () => {
    expect(deliveryIds((await gqlData(api, billing, DEAD_LETTERS, {})).deadLetters)).toEqual(sorted(mail.billing.deadLetters));
    const recipient = mail.billing.recipients[1];
    expect(deliveryIds((await gqlData(api, billing, DEAD_LETTERS, { filter: { recipient } })).deadLetters)).toEqual([mail.billing.deadLetters[0]]);
    // Another producer's recipient: nothing of its own goes there.
    expect(deliveryIds((await gqlData(api, billing, DEAD_LETTERS, { filter: { recipient: mail.crm.recipients[1] } })).deadLetters)).toEqual([]);
  });
});

describe("a producer's token changes its own producer's deliveries only", () => {
  it("cancelDelivery of another producer's delivery: NotFoundError as for no delivery at all, and it stays queued", async () => {
    const other = await gqlData(api, billing, CANCEL, { id: mail.crm.queued });
    const none = await gqlData(api, billing, CANCEL, { id: '00000000-0000-4000-8000-000000000000' });
    expect(other.cancelDelivery).toEqual({ __typename: 'NotFoundError', message: `no delivery with id ${mail.crm.queued}` });
    expect(none.cancelDelivery.__typename).toBe('NotFoundError');
    expect(await statusOf(mail.crm.queued)).toBe('queued');
  });

  it("requeueDeadLetter of another producer's dead letter by id: NotFoundError, and it stays a dead letter", async () => {
    const [crmDead] = mail.crm.deadLetters;
    const answer = await gqlData(api, billing, REQUEUE, { input: { deliveryId: crmDead } });
    expect(answer.requeueDeadLetter).toEqual({ __typename: 'NotFoundError', message: `no delivery with id ${crmDead}` });
    expect(await statusOf(crmDead as string)).toBe('dead_letter');
  });

  it("requeueDeadLetter by filter: naming another producer is FORBIDDEN; an open filter requeues its own alone", async () => {
    const named = await gql(api, billing, REQUEUE, { input: { filter: { source: 'crm' } } });
    expect(named.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'filter.source', requiredScope: 'deliveries:write:any' });
    for (const id of mail.crm.deadLetters) expect(await statusOf(id)).toBe('dead_letter');

    const open = await gqlData(api, billing, REQUEUE, { input: { filter: {}, max: 100 } });
    expect(open.requeueDeadLetter.data.count).toBe(2);
    expect(ids({ edges: open.requeueDeadLetter.data.deliveries.map((node: unknown) => ({ node })) })).toEqual(sorted(mail.billing.deadLetters));
    for (const id of mail.billing.deadLetters) expect(await statusOf(id)).toBe('queued');
    for (const id of mail.crm.deadLetters) expect(await statusOf(id)).toBe('dead_letter');
  });

  it('cancelDelivery of its own delivery is answered as before', async () => {
    const answer = await gqlData(api, billing, CANCEL, { id: mail.billing.queued });
    expect(answer.cancelDelivery).toEqual({ __typename: 'CancelDeliverySuccess', data: { id: mail.billing.queued, status: 'cancelled' } });
  });
});

describe("an operator's :any scopes and admin reach every producer's deliveries", () => {
  it("deliveries:read:any lists every producer's and the edge's; a source filter is a filter, not a refusal", async () => {
    const sources = (await gqlData(api, operator, LIST, {})).deliveries.edges.map((edge: { node: { source: string } }) => edge.node.source);
    expect(new Set(sources)).toEqual(new Set(['billing', 'crm', 'smtp']));
    expect(ids((await gqlData(api, operator, LIST, { filter: { source: 'crm' } })).deliveries)).toEqual(sorted([mail.crm.queued, ...mail.crm.deadLetters]));
    expect((await gqlData(api, operator, ONE, { id: mail.crm.queued })).delivery).toMatchObject({ source: 'crm' });
  });

  it("deliveries:write:any cancels another producer's delivery; admin reads it", async () => {
    const answer = await gqlData(api, operator, CANCEL, { id: mail.crm.queued });
    expect(answer.cancelDelivery).toMatchObject({ __typename: 'CancelDeliverySuccess', data: { status: 'cancelled' } });
    const admin = await mintToken(db.pool, ['admin']);
    expect((await gqlData(api, admin, ONE, { id: mail.crm.queued })).delivery).toMatchObject({ source: 'crm', status: 'cancelled' });
  });

  it("the plain scope and its :any form together reach every producer's, as :any alone does", async () => {
    const both = await mintToken(db.pool, ['deliveries:read', 'deliveries:read:any']);
    expect((await gqlData(api, both, ONE, { id: mail.crm.queued })).delivery).toMatchObject({ source: 'crm' });
  });
});
