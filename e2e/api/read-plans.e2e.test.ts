// The list statements are generated per direction from one template (pagination.ts
// keysetStatements) so that each is an ordinary ORDER BY: PostgreSQL walks the (created_at, id)
// index forwards for ASC, backwards for DESC, and stops after LIMIT rows, with no sort of the table.
// The batched nested reads use their foreign-key indexes. Checked with EXPLAIN on a table large
// enough that a sequential scan plus sort would be the planner's choice if the index did not fit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELIVERIES_SQL } from '../../apps/api/src/schema/delivery.ts';
import { ATTEMPTS_SQL } from '../../apps/api/src/schema/loaders.ts';
import { MALFORMED_COMMANDS_SQL } from '../../apps/api/src/schema/malformed-command.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

const ROWS = 20_000;
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('api-plans');
  await db.pool.query(
    `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, rfc_message_id, status, next_attempt_at,
                                  created_at)
     SELECT 'planner', 'rendered', 's', 't', 'r' || (g % 500) || '@plans.test', '<' || gen_random_uuid() || '@plans.test>',
            'queued', now() + interval '1 day', now() - make_interval(secs => g)
       FROM generate_series(1, $1::int) g`,
    [ROWS],
  );
  await db.pool.query(
    `INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                                started_at, finished_at, duration_ms)
     SELECT dl.id, n, 'transport_failed', 451, '4.3.0', 'try later', 'core:plans', now(), now(), 5
       FROM mail.deliveries dl CROSS JOIN generate_series(1, 3) n`,
  );
  await db.pool.query('ANALYZE mail.deliveries');
  await db.pool.query('ANALYZE mail.attempts');
});

afterAll(async () => {
  await db?.drop();
});

async function plan(text: string, values: unknown[]): Promise<string> {
  const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
  return rows.map((row) => row['QUERY PLAN']).join('\n');
}

/** No filters ($1..$7), no cursors ($8..$11), a page of 21 ($12). */
const firstPage = [null, null, null, null, null, null, null, null, null, null, null, 21];

describe('list statements use the (created_at, id) index in both directions', () => {
  it('ASC walks it forwards, DESC backwards, neither sorts', async () => {
    const asc = await plan(DELIVERIES_SQL.ASC, firstPage);
    const desc = await plan(DELIVERIES_SQL.DESC, firstPage);
    expect(asc).toMatch(/Index Scan using deliveries_created_at_idx/);
    expect(desc).toMatch(/Index Scan Backward using deliveries_created_at_idx/);
    expect(asc).not.toMatch(/Sort/);
    expect(desc).not.toMatch(/Sort/);
  });

  it('a page after a cursor starts inside the index, not at its end', async () => {
    const { rows } = await db.pool.query<{ at: Date; id: string }>(
      'SELECT created_at AS at, id::text AS id FROM mail.deliveries ORDER BY created_at, id OFFSET 10000 LIMIT 1',
    );
    const cursor = rows[0] as { at: Date; id: string };
    const after = await plan(DELIVERIES_SQL.ASC, [null, null, null, null, null, null, null, cursor.at, cursor.id, null, null, 21]);
    const before = await plan(DELIVERIES_SQL.DESC, [null, null, null, null, null, null, null, null, null, cursor.at, cursor.id, 21]);
    expect(after).toMatch(/Index Cond: \(ROW\(created_at, id\) > ROW\(/);
    expect(before).toMatch(/Index Scan Backward using deliveries_created_at_idx[\s\S]*Index Cond: \(ROW\(created_at, id\) < ROW\(/);
  });

  // A token with deliveries:read but not :any lists its own producer's deliveries: the statement
  // is filtered on source ($3). Without an index leading with source, a producer with few
  // deliveries had PostgreSQL walk every other producer's rows (the whole table for a new
  // producer) to find no page's worth. 'scarce' has 5 of the table's 20,005 rows, all recent.
  it("a producer's own list (filter.source) reads its rows in order through (source, created_at, id), in both directions", async () => {
    await db.pool.query(
      `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, rfc_message_id, status, next_attempt_at)
       SELECT 'scarce', 'rendered', 's', 't', 'r@plans.test', '<' || gen_random_uuid() || '@plans.test>', 'queued', now() + interval '1 day'
         FROM generate_series(1, 5)`,
    );
    await db.pool.query('ANALYZE mail.deliveries');
    const { rows } = await db.pool.query<{ at: Date; id: string }>("SELECT created_at AS at, id::text AS id FROM mail.deliveries WHERE source = 'scarce' ORDER BY created_at, id LIMIT 1");
    const cursor = rows[0] as { at: Date; id: string };
    const own = (after: { at: Date; id: string } | null) => [null, null, 'scarce', null, null, null, null, after?.at ?? null, after?.id ?? null, null, null, 21];
    for (const [text, values] of [
      [DELIVERIES_SQL.ASC, own(null)],
      [DELIVERIES_SQL.DESC, own(null)],
      [DELIVERIES_SQL.ASC, own(cursor)],
    ] as const) {
      const chosen = await plan(text, [...values]);
      expect(chosen).toMatch(/Index Scan (Backward )?using deliveries_source_created_at_idx/);
      expect(chosen).toMatch(/Index Cond: \(\(?source = 'scarce'::text\)?/);
      expect(chosen).not.toMatch(/Sort|Seq Scan|Rows Removed by Filter/);
    }
  });

  it('the deliveries of one message (filter.messageId) are found through its index, not by walking the list', async () => {
    const byMessage = await plan(DELIVERIES_SQL.ASC, [null, null, null, null, null, '6f1d3c2a-0b8e-4d7f-9a65-3e2b1c0d9f87', null, null, null, null, null, 21]);
    expect(byMessage).toMatch(/deliveries_message_id_idx/);
  });

  // A producer looking its command up by idempotency key (filter.idempotencyKey, with its source):
  // the reservation's primary key names the delivery, read by its own primary key; neither the
  // producer's rows nor the reservations are walked.
  it("a producer's key (filter.idempotencyKey) is found through the reservation's primary key, then the delivery's", async () => {
    await db.pool.query(
      `INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id)
       SELECT 'planner', 'key-' || row_number() OVER (), 'h', id FROM mail.deliveries WHERE source = 'planner'`,
    );
    await db.pool.query('ANALYZE mail.idempotency_reservations');
    for (const text of [DELIVERIES_SQL.ASC, DELIVERIES_SQL.DESC]) {
      const byKey = await plan(text, [null, null, 'planner', null, null, null, 'key-77', null, null, null, null, 21]);
      expect(byKey).toMatch(/Index Scan using idempotency_reservations_pkey/);
      expect(byKey).toMatch(/Index Scan using deliveries_pkey/);
      expect(byKey).not.toMatch(/Seq Scan|deliveries_source_created_at_idx|deliveries_created_at_idx/);
    }
  });
});

// A producer's token lists its own refused commands: `WHERE source = <its producer>` ($3, and $6
// its reach). With only the (received_at) index, a producer with few refusals had PostgreSQL walk
// every other producer's refusals (the whole table for one with none) or read it all and sort.
// 'scarce' has 5 of the table's 20,005 rows, all recent; 'spread' one in 200 of the others, over the
// whole table; one row has no source at all.
describe("a producer's refused commands come out of (source, received_at, id)", () => {
  beforeAll(async () => {
    await db.pool.query(
      `INSERT INTO mail.malformed_commands (channel, stream_entry_id, failure_code, failure_detail, source, raw, received_at)
       SELECT 'stream', g || '-0', 'missing_field', '"recipient" is required', CASE WHEN g = 1 THEN NULL WHEN g % 200 = 0 THEN 'spread' ELSE 'noisy-' || (g % 7) END, '{}',
              now() - make_interval(secs => g)
         FROM generate_series(1, $1::int) g`,
      [ROWS],
    );
    await db.pool.query(
      `INSERT INTO mail.malformed_commands (channel, failure_code, failure_detail, source, raw)
       SELECT 'api', 'unknown_template', 'no template', 'scarce', '{}' FROM generate_series(1, 5)`,
    );
    await db.pool.query('ANALYZE mail.malformed_commands');
  });

  it('in both directions and after a cursor, without a sort; an operator\'s open list walks (received_at)', async () => {
    const own = (producer: string, after: { at: Date; id: string } | null) => [null, null, producer, null, null, producer, after?.at ?? null, after?.id ?? null, null, null, 21];
    // A producer with few refusals: found by its source, never by walking everyone's (5 rows may be sorted).
    for (const text of [MALFORMED_COMMANDS_SQL.ASC, MALFORMED_COMMANDS_SQL.DESC]) {
      const scarce = await plan(text, own('scarce', null));
      expect(scarce).toMatch(/Index Scan (Backward )?(using|on) malformed_commands_source_received_at_idx/);
      expect(scarce).toMatch(/Index Cond: \(\(?source = 'scarce'::text\)?/);
      expect(scarce).not.toMatch(/Seq Scan|malformed_commands_received_at_idx|Filter:/);
    }
    // A producer with many, spread out: its page comes out of the index in order and stops at LIMIT
    // (walking (received_at) would pass 200 rows of others for each of its own).
    const { rows } = await db.pool.query<{ at: Date; id: string }>(
      "SELECT received_at AS at, id::text AS id FROM mail.malformed_commands WHERE source = 'spread' ORDER BY received_at, id OFFSET 50 LIMIT 1",
    );
    const cursor = rows[0] as { at: Date; id: string };
    for (const [text, values] of [
      [MALFORMED_COMMANDS_SQL.ASC, own('spread', null)],
      [MALFORMED_COMMANDS_SQL.DESC, own('spread', null)],
      [MALFORMED_COMMANDS_SQL.ASC, own('spread', cursor)],
    ] as const) {
      const chosen = await plan(text, [...values]);
      expect(chosen).toMatch(/Index Scan (Backward )?using malformed_commands_source_received_at_idx/);
      expect(chosen).not.toMatch(/Sort|Seq Scan|Filter:/);
    }
    const after = await plan(MALFORMED_COMMANDS_SQL.ASC, own('spread', cursor));
    expect(after).toMatch(/Index Cond: \(\(source = 'spread'::text\) AND \(ROW\(received_at, id\) > ROW\(/);
    // An `api:` producer's reach leaves out the stream's entries that named it: a filter on its own rows only.
    const apiProducer = await plan(MALFORMED_COMMANDS_SQL.ASC, own('api:scarce', null));
    expect(apiProducer).toMatch(/malformed_commands_source_received_at_idx/);
    expect(apiProducer).toMatch(/channel <> 'stream'/);
    // An operator's list (queue:read) is not narrowed to a producer: the order's index, as before
    // (ties on received_at put in id order as they come, never a sort of the table).
    const all = await plan(MALFORMED_COMMANDS_SQL.ASC, [null, null, null, null, null, null, null, null, null, null, 21]);
    expect(all).toMatch(/Index Scan using malformed_commands_received_at_idx/);
    expect(all).not.toMatch(/(^|-> {2})Sort {2}\(|Seq Scan/m);
  });
});

describe('batched nested reads use their index', () => {
  it('attempts of a page of deliveries, and attempts by id', async () => {
    const { rows } = await db.pool.query<{ id: string }>('SELECT id::text AS id FROM mail.deliveries LIMIT 100');
    const byDelivery = await plan(ATTEMPTS_SQL, [rows.map((row) => row.id), null]);
    const byId = await plan(ATTEMPTS_SQL, [null, ['1', '2', '3']]);
    expect(byDelivery).toMatch(/attempts_delivery_id_attempt_number_key/);
    expect(byId).toMatch(/attempts_pkey/);
  });
});
