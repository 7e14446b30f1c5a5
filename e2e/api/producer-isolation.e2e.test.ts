// Producers are isolated: a token sends only as the producer it carries;
// idempotency keys and `duplicate` answers never cross producers; and many identical commands at
// once are one delivery, each caller told "created" or "duplicate" — never a conflict.
import { randomUUID } from 'node:crypto';
import { acceptCommand, decodeCommand, loadTemplateCatalog } from '@postern/shared';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, gqlData, mintToken, openApiFile, TEMPLATE_DIR } from './helpers/api.ts';
import { whileReservationHeld } from './helpers/held-reservation.ts';

let db: TestDatabase;
let api: Api;
let billing: string;
let crm: string;

beforeAll(async () => {
  // A pool as wide as the race below, so the identical commands really run their transactions at once.
  ({ db, api } = await openApiFile('api-producers', { MAIL_POSTGRES_POOL_MAX: '16' }));
  billing = await mintToken(db.pool, ['send'], 'billing-svc', 'billing');
  crm = await mintToken(db.pool, ['send'], 'crm-svc', 'crm');
});

afterAll(() => closeApiFile(db, api));

const SEND = `mutation($input: SendEmailInput!) {
  sendEmail(input: $input) {
    __typename
    ... on SendEmailSuccess { data { duplicate delivery { id source recipient idempotencyKey } } }
    ... on Error { message }
  }
}`;

function rendered(subject: string) {
  return { subject, text: `${subject} body` };
}

async function deliveriesWithKey(key: string): Promise<Array<{ id: string; source: string }>> {
  const { rows } = await db.pool.query<{ id: string; source: string }>(
    'SELECT id::text AS id, source FROM mail.deliveries WHERE idempotency_key = $1 ORDER BY created_at',
    [key],
  );
  return rows;
}

describe('a token sends as its producer only', () => {
  it('without a source, the delivery is the token producer\'s', async () => {
    const key = `k-${randomUUID()}`;
    const data = await gqlData(api, billing, SEND, { input: { to: 'a@customers.test', idempotencyKey: key, rendered: rendered('s') } });
    expect(data.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: false, delivery: { source: 'billing' } } });
  });

  it('its own producer as source is accepted', async () => {
    const key = `k-${randomUUID()}`;
    const data = await gqlData(api, billing, SEND, { input: { to: 'a@customers.test', idempotencyKey: key, source: 'billing', rendered: rendered('s') } });
    expect(data.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { delivery: { source: 'billing' } } });
  });

  it('another producer as source is FORBIDDEN naming input.source, and nothing is stored or quarantined', async () => {
    const key = `k-${randomUUID()}`;
    const quarantinedBefore = (await db.pool.query('SELECT count(*)::int AS n FROM mail.malformed_commands')).rows[0].n;
    const answer = await gql(api, crm, SEND, { input: { to: 'a@customers.test', idempotencyKey: key, source: 'billing', rendered: rendered('s') } });
    expect(answer.status).toBe(200);
    expect(answer.body.data?.sendEmail ?? null).toBeNull();
    expect(answer.body.errors).toHaveLength(1);
    expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'input.source', producer: 'crm' });
    expect(answer.body.errors?.[0]?.message).toContain('"crm"');
    expect(await deliveriesWithKey(key)).toEqual([]);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM mail.malformed_commands')).rows[0].n).toBe(quarantinedBefore);
  });
});

describe('idempotency keys never cross producers', () => {
  it('A cannot pre-empt B\'s key by claiming B\'s source: B\'s real send is new, not A\'s duplicate', async () => {
    const key = `order-${randomUUID()}`;
    const input = { to: 'same@customers.test', idempotencyKey: key, rendered: rendered('Your receipt') };
    const squat = await gql(api, crm, SEND, { input: { ...input, source: 'billing' } });
    expect(squat.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'input.source' });
    const real = await gqlData(api, billing, SEND, { input });
    expect(real.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: false, delivery: { source: 'billing' } } });
    expect((await deliveriesWithKey(key)).map((row) => row.source)).toEqual(['billing']);
  });

  it('A cannot pre-empt B\'s key with other content either: B\'s real send is accepted, not a conflict', async () => {
    const key = `order-${randomUUID()}`;
    const squat = await gql(api, crm, SEND, { input: { to: 'x@customers.test', idempotencyKey: key, source: 'billing', rendered: rendered('squatted') } });
    expect(squat.body.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', field: 'input.source' });
    const real = await gqlData(api, billing, SEND, { input: { to: 'y@customers.test', idempotencyKey: key, rendered: rendered('real') } });
    expect(real.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: false, delivery: { source: 'billing' } } });
  });

  it('the same key under two producers is two deliveries; each retry finds only its own', async () => {
    const key = `order-${randomUUID()}`;
    const input = { to: 'same@customers.test', idempotencyKey: key, rendered: rendered('Your receipt') };
    const first = await gqlData(api, crm, SEND, { input });
    expect(first.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: false, delivery: { source: 'crm' } } });
    const second = await gqlData(api, billing, SEND, { input });
    expect(second.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: false, delivery: { source: 'billing' } } });
    expect(second.sendEmail.data.delivery.id).not.toBe(first.sendEmail.data.delivery.id);
    const billingRetry = await gqlData(api, billing, SEND, { input });
    expect(billingRetry.sendEmail.data).toMatchObject({ duplicate: true, delivery: { id: second.sendEmail.data.delivery.id, source: 'billing' } });
    const crmRetry = await gqlData(api, crm, SEND, { input });
    expect(crmRetry.sendEmail.data).toMatchObject({ duplicate: true, delivery: { id: first.sendEmail.data.delivery.id, source: 'crm' } });
    expect((await deliveriesWithKey(key)).map((row) => row.source).sort()).toEqual(['billing', 'crm']);
  });

  it('a conflict under one producer names only that producer\'s delivery', async () => {
    const key = `order-${randomUUID()}`;
    const mine = await gqlData(api, billing, SEND, { input: { to: 'z@customers.test', idempotencyKey: key, rendered: rendered('one') } });
    await gqlData(api, crm, SEND, { input: { to: 'z@customers.test', idempotencyKey: key, rendered: rendered('other') } });
    const clash = await gqlData(api, billing, SEND, { input: { to: 'z@customers.test', idempotencyKey: key, rendered: rendered('two') } });
    expect(clash.sendEmail.__typename).toBe('ConflictError');
    expect(clash.sendEmail.message).toContain(mine.sendEmail.data.delivery.id);
    const crmIds = (await deliveriesWithKey(key)).filter((row) => row.source === 'crm').map((row) => row.id);
    for (const id of crmIds) expect(clash.sendEmail.message).not.toContain(id);
  });

  it('a producer-chosen delivery id taken by another producer is a conflict that reveals nothing of it', async () => {
    const deliveryId = randomUUID();
    const key = `order-${randomUUID()}`;
    const input = { to: 'w@customers.test', idempotencyKey: key, deliveryId, rendered: rendered('Secret subject 493817') };
    await gqlData(api, crm, SEND, { input });
    const answer = await gql(api, billing, SEND, { input });
    const result = (answer.body.data as { sendEmail: { __typename: string; message?: string } }).sendEmail;
    expect(result.__typename).toBe('ConflictError');
    expect(JSON.stringify(answer.body)).not.toContain('crm');
    expect(JSON.stringify(answer.body)).not.toContain('493817');
  });
});

describe('one intake: the stream\'s `source` and a token\'s producer are the same key space', () => {
  // A pool as wide as the race, like an engine's (the test database's own pool has 4 connections).
  let pool: pg.Pool;
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: db.dsn, max: 12 });
  });
  afterAll(async () => {
    await pool?.end();
  });

  const catalog = loadTemplateCatalog(TEMPLATE_DIR);
  // What the engine's stream consumer does with an entry (apps/core/src/intake/consume-stream.ts).
  async function fromStream(fields: Record<string, string>) {
    const decoded = decodeCommand(fields);
    if (!decoded.ok) throw new Error(decoded.failure.detail);
    return acceptCommand(pool, decoded.command, { catalog, sender: 'postern@postern.test' });
  }

  it('a stream command of producer billing and the billing token\'s send are one delivery; crm\'s stream command is not', async () => {
    const key = `both-${randomUUID()}`;
    const v1 = (source: string) => ({ schema_version: '1', source, idempotency_key: key, recipient: 'both@customers.test', payload_mode: 'rendered', subject: 'Both', text: 'Both body' });
    const viaStream = await fromStream(v1('billing'));
    expect(viaStream.status).toBe('created');
    const viaApi = await gqlData(api, billing, SEND, { input: { to: 'both@customers.test', idempotencyKey: key, rendered: rendered('Both') } });
    expect(viaApi.sendEmail.data).toMatchObject({ duplicate: true, delivery: { source: 'billing' } });
    expect(viaApi.sendEmail.data.delivery.id).toBe(viaStream.status === 'created' ? viaStream.deliveryId : null);
    const otherProducer = await fromStream(v1('crm'));
    expect(otherProducer.status).toBe('created');
    expect((await deliveriesWithKey(key)).map((row) => row.source).sort()).toEqual(['billing', 'crm']);
  });

  it('each connection parses the intake\'s statements once, not once per command (named statements)', async () => {
    const single = new pg.Pool({ connectionString: db.dsn, max: 1 });
    try {
      for (let index = 0; index < 3; index++) {
        const decoded = decodeCommand({ schema_version: '1', source: 'billing', idempotency_key: `named-${randomUUID()}`, recipient: 'named@customers.test', payload_mode: 'rendered', subject: 'N', text: 'N' });
        if (!decoded.ok) throw new Error(decoded.failure.detail);
        expect((await acceptCommand(single, decoded.command, { catalog, sender: 'postern@postern.test' })).status).toBe('created');
      }
      // pg_prepared_statements lists the statements of the session asking: the pool's one connection.
      const { rows } = await single.query<{ name: string }>("SELECT name FROM pg_prepared_statements WHERE name LIKE 'postern\\_%' ORDER BY name");
      expect(rows.map((row) => row.name)).toEqual(['postern_find_reservation', 'postern_insert_delivery', 'postern_insert_reservation']);
    } finally {
      await single.end();
    }
  });

  it('on the stream too, identical commands at once with a chosen delivery id are created-or-duplicate, never a conflict', async () => {
    const deliveryId = randomUUID();
    const key = `stream-race-${randomUUID()}`;
    const fields = {
      schema_version: '2',
      command: JSON.stringify({ source: 'billing', idempotencyKey: key, deliveryId, to: 'r@customers.test', payload: { mode: 'rendered', subject: 'R', text: 'R' } }),
    };
    const outcomes = await whileReservationHeld(db.pool, 'billing', key, 6, () => Promise.all(Array.from({ length: 6 }, () => fromStream(fields))));
    expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['created', ...Array(5).fill('duplicate')]);
    expect(new Set(outcomes.map((outcome) => (outcome.status === 'refused' ? null : outcome.deliveryId)))).toEqual(new Set([deliveryId]));
  });
});

describe('concurrent identical commands', () => {
  it('forced interleaving, with a producer-chosen deliveryId: one created, the others duplicates of it', async () => {
    const key = `forced-${randomUUID()}`;
    const deliveryId = randomUUID();
    const input = { to: 'race@customers.test', idempotencyKey: key, deliveryId, rendered: rendered('Race') };
    const answers = await whileReservationHeld(db.pool, 'billing', key, 6, () =>
      Promise.all(Array.from({ length: 6 }, () => gqlData(api, billing, SEND, { input }))),
    );
    expect(answers.map((answer) => answer.sendEmail.__typename)).toEqual(Array(6).fill('SendEmailSuccess'));
    expect(answers.map((answer) => answer.sendEmail.data.duplicate).sort()).toEqual([false, true, true, true, true, true]);
    expect(new Set(answers.map((answer) => answer.sendEmail.data.delivery.id))).toEqual(new Set([deliveryId]));
    expect(await deliveriesWithKey(key)).toEqual([{ id: deliveryId, source: 'billing' }]);
  });

  it.each([
    ['with a producer-chosen deliveryId', true],
    ['without a deliveryId', false],
  ])('%s, many at once over HTTP, several rounds: every answer is created-or-duplicate of one delivery', async (_label, withId) => {
    for (let round = 0; round < 5; round++) {
      const key = `race-${randomUUID()}`;
      const input = {
        to: 'race@customers.test',
        idempotencyKey: key,
        ...(withId ? { deliveryId: randomUUID() } : {}),
        rendered: rendered('Race'),
      };
      const answers = await Promise.all(Array.from({ length: 24 }, () => gqlData(api, billing, SEND, { input })));
      const refused = answers.filter((answer) => answer.sendEmail.__typename !== 'SendEmailSuccess');
      expect(refused, JSON.stringify(refused[0])).toEqual([]);
      expect(answers.filter((answer) => answer.sendEmail.data.duplicate === false)).toHaveLength(1);
      const ids = new Set(answers.map((answer) => answer.sendEmail.data.delivery.id));
      expect(ids.size).toBe(1);
      const stored = await deliveriesWithKey(key);
      expect(stored.map((row) => row.id)).toEqual([...ids]);
      if (withId) expect(stored[0]?.id).toBe(input.deliveryId);
    }
  });
});
