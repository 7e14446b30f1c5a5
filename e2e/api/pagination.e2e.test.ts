// Keyset pagination: walking every page while other rows are being inserted returns every row that
// existed before the walk exactly once, and no row twice. OFFSET paging fails this: an insert
// before the offset shifts the next page and repeats a row.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;
let reader: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-pages'));
  reader = await mintToken(db.pool, ['deliveries:read:any']);
});

afterAll(() => closeApiFile(db, api));

/** `count` queued deliveries for `recipient`; many in one statement share one created_at (now()). */
async function insertDeliveries(count: number, recipient: string, source = 'pager', createdSecondsAgo = 0): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, rfc_message_id, status, next_attempt_at,
                                  created_at)
     SELECT $3, 'rendered', 's', 't', $2, '<' || gen_random_uuid() || '@pager.test>', 'queued', now() + interval '1 day',
            now() - make_interval(secs => $4)
       FROM generate_series(1, $1)
     RETURNING id::text`,
    [count, recipient, source, createdSecondsAgo],
  );
  return rows.map((row) => row.id);
}

const PAGE = `query($first: Int, $after: String, $last: Int, $before: String, $filter: DeliveryFilter) {
  deliveries(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

interface Page {
  edges: Array<{ cursor: string; node: { id: string } }>;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string; endCursor: string };
}

describe('deliveries pagination', () => {
  it('returns every row exactly once across pages while rows are being inserted', async () => {
    const recipient = `walk-${randomUUID().slice(0, 8)}@pager.test`;
    // Several statements, several created_at values, and ties within each: the id breaks them.
    const existing: string[] = [];
    for (let batch = 0; batch < 5; batch++) existing.push(...(await insertDeliveries(19, recipient)));

    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    let insertedDuringWalk = 0;
    for (;;) {
      const data: { deliveries: Page } = await gqlData(api, reader, PAGE, { first: 7, after, filter: { recipient } });
      seen.push(...data.deliveries.edges.map((edge) => edge.node.id));
      pages += 1;
      // Between pages, others insert rows: some sort after the cursor, some before it (a row whose
      // created_at is older, like a transaction that started earlier and committed late). With OFFSET
      // the latter would shift every later page and repeat rows; with the keyset they cannot.
      insertedDuringWalk += (await insertDeliveries(2, recipient)).length;
      insertedDuringWalk += (await insertDeliveries(2, recipient, 'pager', 3600)).length;
      if (!data.deliveries.pageInfo.hasNextPage) break;
      after = data.deliveries.pageInfo.endCursor;
      expect(pages).toBeLessThan(200);
    }
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of existing) expect(seen).toContain(id);
    expect(seen.slice(0, existing.length).sort()).toEqual([...existing].sort());
    expect(insertedDuringWalk).toBeGreaterThan(0);
  });

  it('pages backwards with last/before to the same rows, in the same order', async () => {
    const recipient = `back-${randomUUID().slice(0, 8)}@pager.test`;
    for (let batch = 0; batch < 3; batch++) await insertDeliveries(5, recipient);
    const forward: string[] = [];
    let after: string | null = null;
    for (;;) {
      const data: { deliveries: Page } = await gqlData(api, reader, PAGE, { first: 4, after, filter: { recipient } });
      forward.push(...data.deliveries.edges.map((edge) => edge.node.id));
      if (!data.deliveries.pageInfo.hasNextPage) break;
      after = data.deliveries.pageInfo.endCursor;
    }
    const backward: string[] = [];
    let before: string | null = null;
    for (;;) {
      const data: { deliveries: Page } = await gqlData(api, reader, PAGE, { last: 4, before, filter: { recipient } });
      backward.unshift(...data.deliveries.edges.map((edge) => edge.node.id));
      if (!data.deliveries.pageInfo.hasPreviousPage) break;
      before = data.deliveries.pageInfo.startCursor;
    }
    expect(forward).toHaveLength(15);
    expect(backward).toEqual(forward);
  });

  it('filters by status, source and time range', async () => {
    const recipient = `filter-${randomUUID().slice(0, 8)}@pager.test`;
    const mine = await insertDeliveries(3, recipient, 'filter-source');
    const cutoff = (await db.pool.query<{ at: Date }>('SELECT max(created_at) AS at FROM mail.deliveries')).rows[0]?.at as Date;
    const data = await gqlData(api, reader, PAGE, {
      first: 100,
      filter: { status: ['queued'], source: 'filter-source', createdBefore: new Date(cutoff.getTime() + 1000).toISOString() },
    });
    expect(data.deliveries.edges.map((edge: { node: { id: string } }) => edge.node.id).sort()).toEqual([...mine].sort());
    const none = await gqlData(api, reader, PAGE, { first: 100, filter: { status: ['sent'], source: 'filter-source' } });
    expect(none.deliveries.edges).toEqual([]);
  });

  it('refuses a forged cursor and caps the page size', async () => {
    const forged = await gql(api, reader, PAGE, { first: 5, after: 'bm90IGEgY3Vyc29y' });
    expect(forged.body.errors?.[0]?.message).toContain('invalid cursor');
    const sqlish = await gql(api, reader, PAGE, { first: 5, after: Buffer.from(JSON.stringify(["2025-01-01T00:00:00Z", "1'; DROP TABLE x; --"])).toString('base64url') });
    expect(sqlish.body.errors?.[0]?.message).toContain('invalid cursor');
    const recipient = `cap-${randomUUID().slice(0, 8)}@pager.test`;
    await insertDeliveries(120, recipient);
    const capped = await gqlData(api, reader, PAGE, { first: 1000, filter: { recipient } });
    expect(capped.deliveries.edges).toHaveLength(100);
    expect(capped.deliveries.pageInfo.hasNextPage).toBe(true);
  });
});
