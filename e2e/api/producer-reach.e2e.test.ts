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

// The commands Postern refused are read like deliveries: a producer's token (`deliveries:read`)
// lists its own producer's refusals and nothing else, whatever it filters or pages with; an
// operator's `queue:read` lists every one, those whose producer could not be read included.
describe("a producer's token reads its own producer's refused commands only", () => {
  /** Row ids by owner, oldest first; received over the last minute, the owners interleaved. */
  const refused = { billing: [] as string[], crm: [] as string[], unknown: [] as string[], lonely: [] as string[], posingAsLonely: [] as string[] };
  let lonely: string;
  let billingRaw: string;
  let queueReader: string;

  async function refusal(owner: keyof typeof refused, secondsAgo: number, row: { channel: 'stream' | 'api'; source: string | null; code: string; raw: string }): Promise<void> {
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO mail.malformed_commands (channel, stream_entry_id, failure_code, failure_detail, source, raw, received_at)
       VALUES ($1::text, CASE WHEN $1::text = 'stream' THEN $2::int::text || '-0' END, $3, 'refused for the test', $4, $5,
               now() - make_interval(secs => $2::int))
       RETURNING id::text AS id`,
      [row.channel, secondsAgo, row.code, row.source, row.raw],
    );
    refused[owner].push(rows[0]?.id as string);
  }

  const REFUSED = `query($filter: MalformedCommandFilter, $first: Int, $last: Int, $after: String, $before: String) {
    malformedCommands(first: $first, last: $last, after: $after, before: $before, filter: $filter) {
      edges { cursor node { id source failureCode } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }`;
  // biome-ignore lint/suspicious/noExplicitAny: read loosely.
  const refusedIds = (data: any): string[] => data.malformedCommands.edges.map((edge: any) => edge.node.id);

  beforeAll(async () => {
    lonely = await mintToken(db.pool, ['deliveries:read'], 'lonely');
    billingRaw = await mintToken(db.pool, ['deliveries:read', 'commands:raw:read'], 'billing-raw', 'billing');
    queueReader = await mintToken(db.pool, ['queue:read'], 'queue-reader');
    await refusal('billing', 50, { channel: 'stream', source: 'billing', code: 'missing_field', raw: '{"source":"billing","code":"billing-raw-111"}' });
    await refusal('crm', 40, { channel: 'stream', source: 'crm', code: 'unknown_template', raw: '{"source":"crm","code":"crm-secret-493817"}' });
    await refusal('billing', 30, { channel: 'api', source: 'billing', code: 'missing_variable', raw: '{"source":"billing"}' });
    await refusal('unknown', 25, { channel: 'stream', source: null, code: 'invalid_json', raw: '{"command":"{not json"}' });
    await refusal('crm', 20, { channel: 'api', source: 'crm', code: 'invalid_address', raw: '{"source":"crm","to":"crm-secret-493817"}' });
    await refusal('billing', 10, { channel: 'stream', source: 'billing', code: 'idempotency_conflict', raw: '{"source":"billing"}' });
    await refusal('lonely', 8, { channel: 'api', source: 'api:lonely', code: 'unknown_template', raw: '{"source":"api:lonely"}' });
    // A stream entry naming the token's own producer: refused (no stream producer may send as an
    // API token), and not the token's to read.
    await refusal('posingAsLonely', 6, { channel: 'stream', source: 'api:lonely', code: 'invalid_field', raw: '{"source":"api:lonely","code":"posing-424242"}' });
    await refusal('crm', 5, { channel: 'stream', source: 'crm', code: 'missing_field', raw: '{"source":"crm"}' });
  });

  it('the list holds its own and nothing else, oldest first; naming its own producer is the same list', async () => {
    expect(refusedIds(await gqlData(api, billing, REFUSED, { first: 50 }))).toEqual(refused.billing);
    expect(refusedIds(await gqlData(api, billing, REFUSED, { first: 50, filter: { source: 'billing' } }))).toEqual(refused.billing);
    expect(refusedIds(await gqlData(api, crm, REFUSED, { first: 50 }))).toEqual(refused.crm);
    // Filtered further as asked, within its own.
    expect(refusedIds(await gqlData(api, billing, REFUSED, { first: 50, filter: { channel: 'api' } }))).toEqual([refused.billing[1]]);
    expect(refusedIds(await gqlData(api, billing, REFUSED, { first: 50, filter: { failureCode: 'unknown_template' } }))).toEqual([]);
  });

  it("a filter naming another producer, the edge, or another token's own is FORBIDDEN and names queue:read", async () => {
    for (const source of ['crm', 'smtp', 'api:lonely']) {
      const answer = await gql(api, billing, REFUSED, { first: 50, filter: { source } });
      expect(answer.body.data).toBeNull();
      expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'filter.source', producer: 'billing', requiredScope: 'queue:read' });
      for (const id of [...refused.crm, ...refused.lonely]) expect(JSON.stringify(answer.body)).not.toContain(`"${id}"`);
    }
  });

  it("pages and cursors never reach another's rows, nor say that there are any", async () => {
    // One row a page: three pages, the last one saying there is no next (crm's newest row comes after it).
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 5; page++) {
      const data = await gqlData(api, billing, REFUSED, { first: 1, after });
      seen.push(...refusedIds(data));
      const pageInfo: { hasNextPage: boolean; endCursor: string } = data.malformedCommands.pageInfo;
      if (!pageInfo.hasNextPage) break;
      after = pageInfo.endCursor;
    }
    expect(seen).toEqual(refused.billing);
    const all = await gqlData(api, billing, REFUSED, { first: 3 });
    expect(all.malformedCommands.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });
    const newest = await gqlData(api, billing, REFUSED, { last: 1 });
    expect(refusedIds(newest)).toEqual([refused.billing[2]]);
    expect(newest.malformedCommands.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    // A cursor at another producer's row (an operator's list hands them out) is a position, not a way in.
    const everything = await gqlData(api, queueReader, REFUSED, { first: 50 });
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    const cursorOf = (id: string) => everything.malformedCommands.edges.find((edge: any) => edge.node.id === id).cursor as string;
    expect(refusedIds(await gqlData(api, billing, REFUSED, { first: 50, after: cursorOf(refused.crm[0] as string) }))).toEqual(refused.billing.slice(1));
    expect(refusedIds(await gqlData(api, billing, REFUSED, { last: 50, before: cursorOf(refused.crm[1] as string) }))).toEqual(refused.billing.slice(0, 2));
  });

  it('its raw text needs commands:raw:read, and with it is its own alone', async () => {
    const RAW = '{ malformedCommands(first: 50) { edges { node { id raw } } } }';
    const without = await gql(api, billing, RAW);
    expect(without.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'commands:raw:read' });
    expect(JSON.stringify(without.body)).not.toContain('billing-raw-111');
    const withRaw = await gqlData(api, billingRaw, RAW);
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    expect(withRaw.malformedCommands.edges.map((edge: any) => edge.node.id)).toEqual(refused.billing);
    expect(JSON.stringify(withRaw)).toContain('billing-raw-111');
    expect(JSON.stringify(withRaw)).not.toMatch(/crm-secret|posing-424242/);
  });

  it("a token's own api: producer: its sendEmail refusals, not the stream entries that named it", async () => {
    expect(refusedIds(await gqlData(api, lonely, REFUSED, { first: 50 }))).toEqual(refused.lonely);
    const operatorView = await gqlData(api, queueReader, REFUSED, { first: 50, filter: { source: 'api:lonely' } });
    expect(refusedIds(operatorView)).toEqual([...refused.lonely, ...refused.posingAsLonely]);
  });

  it("queue:read reads every producer's, and those of no readable producer; deliveries:read:any does not widen a producer's", async () => {
    const everything = refusedIds(await gqlData(api, queueReader, REFUSED, { first: 50 }));
    for (const id of Object.values(refused).flat()) expect(everything).toContain(id);
    expect(refusedIds(await gqlData(api, queueReader, REFUSED, { first: 50, filter: { source: 'crm' } }))).toEqual(refused.crm);

    const anyDeliveries = await mintToken(db.pool, ['deliveries:read:any'], 'any-deliveries', 'billing');
    expect(refusedIds(await gqlData(api, anyDeliveries, REFUSED, { first: 50 }))).toEqual(refused.billing);
    const named = await gql(api, anyDeliveries, REFUSED, { first: 50, filter: { source: 'crm' } });
    expect(named.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'filter.source', requiredScope: 'queue:read' });

    const sender = await mintToken(db.pool, ['send'], 'send-only', 'billing');
    const none = await gql(api, sender, REFUSED, { first: 50 });
    expect(none.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', requiredScope: 'deliveries:read' });
    expect(none.body.data).toBeNull();
  });
});

describe("a producer finds its delivery by its idempotency key", () => {
  const SEND = 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { ... on SendEmailSuccess { data { delivery { id } } } } }';
  const BY_KEY = 'query($filter: DeliveryFilter) { deliveries(first: 50, filter: $filter) { edges { node { id source idempotencyKey } } } }';

  it("its own producer's key names its delivery alone; an operator gives the producer with the key", async () => {
    const key = `order-${randomUUID()}`;
    const sent: Record<string, string> = {};
    for (const [producer, token] of [['billing', billing], ['crm', crm]] as const) {
      const data = await gqlData(api, token, SEND, { input: { to: `${producer}-key@customers.test`, idempotencyKey: key, rendered: { subject: 's', text: 't' } } });
      sent[producer] = data.sendEmail.data.delivery.id;
    }
    expect((await gqlData(api, billing, BY_KEY, { filter: { idempotencyKey: key } })).deliveries.edges).toEqual([
      { node: { id: sent.billing, source: 'billing', idempotencyKey: key } },
    ]);
    expect(ids((await gqlData(api, crm, BY_KEY, { filter: { idempotencyKey: key } })).deliveries)).toEqual([sent.crm]);
    expect(ids((await gqlData(api, billing, BY_KEY, { filter: { idempotencyKey: `${key}-never-sent` } })).deliveries)).toEqual([]);

    const withoutSource = await gql(api, operator, BY_KEY, { filter: { idempotencyKey: key } });
    expect(withoutSource.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', argument: 'filter.idempotencyKey' });
    expect(ids((await gqlData(api, operator, BY_KEY, { filter: { idempotencyKey: key, source: 'crm' } })).deliveries)).toEqual([sent.crm]);
  });
});
