// One intake, one key space per producer, over the real stream: a command XADDed with
// `source: billing` and the billing token's sendEmail are the same producer (a duplicate, never two
// mails); `crm`'s command with the same key is crm's own delivery; and two engines taking identical
// commands with a chosen delivery id at the same moment accept one and count the other a
// duplicate, instead of quarantining it as a conflict. Template variables nested beyond what
// JSON.stringify can walk are refused as invalid_field on both channels, at once, and so are
// variables the template cannot render; a suppressed address in another spelling is suppressed. A
// producer reads why its own stream commands were refused with its own token, never another's.
// A Redis of this file's own: the shared one's
// stream belongs to e2e/core/stream-intake.e2e.test.ts.
import { randomUUID } from 'node:crypto';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { gql, gqlData, mintToken, startTestApi } from './helpers/api.ts';
import { startTestEngine } from './helpers/engine.ts';
import { whileReservationHeld } from './helpers/held-reservation.ts';

let db: TestDatabase;
let container: StartedRedisContainer;
let redis: Redis;
let engines: Engine[] = [];
let api: Api;
let billing: string;

beforeAll(async () => {
  db = await createTestDatabase('api-producer-stream');
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).start();
  redis = new Redis({ host: container.getHost(), port: container.getPort(), maxRetriesPerRequest: 1 });
  // Two engines in one consumer group: two consumers, each handling one entry at a time.
  const env = { MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`, MAIL_SMTP_MODE: 'stub' };
  engines = await Promise.all([startTestEngine(db.dsn, env), startTestEngine(db.dsn, env)]);
  api = await startTestApi(db.dsn);
  billing = await mintToken(db.pool, ['send'], 'billing-stream', 'billing');
});

afterAll(async () => {
  await Promise.allSettled([api?.stop(), ...engines.map((engine) => engine.stop())]);
  redis?.disconnect();
  await container?.stop({ remove: true, removeVolumes: true });
  await db?.drop();
});

function xadd(command: Record<string, unknown>): Promise<string> {
  return redis.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', JSON.stringify(command)) as Promise<string>;
}

async function rowsFor(key: string): Promise<Array<{ id: string; source: string }>> {
  const { rows } = await db.pool.query<{ id: string; source: string }>(
    'SELECT id::text AS id, source FROM mail.deliveries WHERE idempotency_key = $1 ORDER BY source',
    [key],
  );
  return rows;
}

async function quarantinedFor(key: string): Promise<Array<{ failure_code: string; failure_detail: string; source: string }>> {
  const { rows } = await db.pool.query<{ failure_code: string; failure_detail: string; source: string }>(
    "SELECT failure_code, failure_detail, source FROM mail.malformed_commands WHERE raw LIKE '%' || $1 || '%'",
    [key],
  );
  return rows;
}

/** Every entry up to `lastId` read by the group and acknowledged (handled: accepted or quarantined). */
async function streamHandledUpTo(lastId: string): Promise<void> {
  await waitFor(
    `every stream entry up to ${lastId} handled and acknowledged`,
    async () => {
      const groups = (await redis.xinfo('GROUPS', COMMAND_STREAM)) as unknown[][];
      return groups.map((group) => {
        const info = Object.fromEntries(Array.from({ length: group.length / 2 }, (_, i) => [String(group[2 * i]), group[2 * i + 1]]));
        return { pending: Number(info.pending), lastDelivered: String(info['last-delivered-id']) };
      });
    },
    (groups) => groups.length === 1 && groups[0]?.pending === 0 && groups[0]?.lastDelivered === lastId,
    { timeoutMs: 30_000 },
  );
}

const SEND = `mutation($input: SendEmailInput!) {
  sendEmail(input: $input) { __typename ... on SendEmailSuccess { data { duplicate delivery { id source } } } ... on Error { message } }
}`;

describe('the stream and the API are one intake, keyed by producer', () => {
  it('billing on the stream then the billing token: one delivery; crm with the same key: its own; a conflict names only billing\'s', async () => {
    const key = `invoice-${randomUUID()}`;
    const content = { to: 'ann@customers.test', idempotencyKey: key, payload: { mode: 'rendered', subject: 'Invoice 7', text: 'Amount due: 7 EUR' } };
    await xadd({ source: 'billing', ...content });
    const [fromStream] = await waitFor('billing\'s stream command accepted', () => rowsFor(key), (rows) => rows.length === 1);

    const viaApi = await gqlData(api, billing, SEND, { input: { to: content.to, idempotencyKey: key, rendered: { subject: 'Invoice 7', text: 'Amount due: 7 EUR' } } });
    expect(viaApi.sendEmail).toMatchObject({ __typename: 'SendEmailSuccess', data: { duplicate: true, delivery: { id: fromStream?.id, source: 'billing' } } });

    await xadd({ source: 'crm', ...content });
    const both = await waitFor('crm\'s own delivery', () => rowsFor(key), (rows) => rows.length === 2);
    expect(both.map((row) => row.source)).toEqual(['billing', 'crm']);
    const crmId = both.find((row) => row.source === 'crm')?.id as string;

    await xadd({ source: 'billing', ...content, payload: { ...content.payload, text: 'Amount due: 8 EUR' } });
    const [conflict] = await waitFor('billing\'s other content quarantined', () => quarantinedFor(key), (rows) => rows.length === 1);
    expect(conflict).toMatchObject({ failure_code: 'idempotency_conflict', source: 'billing' });
    expect(conflict?.failure_detail).toContain(fromStream?.id);
    expect(conflict?.failure_detail).not.toContain(crmId);
    expect(await rowsFor(key)).toHaveLength(2);
  });

  it('two engines taking identical commands with a chosen delivery id at once: one delivery, nothing quarantined', async () => {
    const key = `race-${randomUUID()}`;
    const deliveryId = randomUUID();
    const command = { source: 'billing', idempotencyKey: key, deliveryId, to: 'race@customers.test', payload: { mode: 'rendered', subject: 'Race', text: 'Race' } };
    // Forces the interleaving (helpers/held-reservation.ts): the first engine blocks inserting
    // billing's reservation of the key with the delivery row inserted, and the second passes its
    // reservation lookup and blocks on that row; then let go.
    let lastId = '';
    await whileReservationHeld(db.pool, 'billing', key, 2, async () => {
      for (let i = 0; i < 4; i++) lastId = await xadd(command);
    });
    await streamHandledUpTo(lastId);
    expect(await rowsFor(key)).toEqual([{ id: deliveryId, source: 'billing' }]);
    expect(await quarantinedFor(key)).toEqual([]);
  });
});

describe('template variables nested too deeply', () => {
  // 5,000 levels: JSON.parse takes them, JSON.stringify (storing the variables, quarantining the
  // request) overflows the stack. Written as text: the test's own JSON.stringify would overflow too.
  const deepVariables = `{"code":"493817","expiresInMinutes":10,"nested":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`;

  it('on the stream: quarantined as invalid_field at once, not retried into handling_failed', async () => {
    const key = `deep-${randomUUID()}`;
    const command = `{"source":"billing","idempotencyKey":"${key}","to":"deep@customers.test","payload":{"mode":"template","templateId":"login-code","variables":${deepVariables}}}`;
    const id = (await redis.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', command)) as string;
    await streamHandledUpTo(id);
    const quarantined = await quarantinedFor(key);
    expect(quarantined).toEqual([{ failure_code: 'invalid_field', failure_detail: expect.stringMatching(/^"variables" is nested deeper than 32 levels/), source: 'billing' }]);
    expect(await rowsFor(key)).toEqual([]);
  });

  it('through sendEmail: a ValidationError on template.variables, recorded like every refused command', async () => {
    const key = `deep-${randomUUID()}`;
    const query = 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { __typename ... on ValidationError { field code message } } }';
    const body = `{"query":${JSON.stringify(query)},"variables":{"input":{"to":"deep@customers.test","idempotencyKey":"${key}","template":{"id":"login-code","variables":${deepVariables}}}}}`;
    const response = await fetch(api.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${billing}` }, body });
    const answer = await response.json();
    expect(answer).toEqual({
      data: { sendEmail: { __typename: 'ValidationError', field: 'template.variables', code: 'INVALID_INPUT', message: expect.stringMatching(/^"template\.variables" is nested deeper than 32 levels/) } },
    });
    expect(await quarantinedFor(key)).toEqual([{ failure_code: 'invalid_field', failure_detail: expect.stringMatching(/nested deeper than 32 levels/), source: 'billing' }]);
    expect(await rowsFor(key)).toEqual([]);
    // A variable object within the limit is still a delivery.
    const shallow = await gql(api, billing, query.replace('field code message', 'field code message } ... on SendEmailSuccess { data { duplicate }'), {
      input: { to: 'deep@customers.test', idempotencyKey: `${key}-ok`, template: { id: 'login-code', variables: { code: '1', expiresInMinutes: 10, nested: { a: { b: { c: [1] } } } } } },
    });
    expect(shallow.body.data).toEqual({ sendEmail: { __typename: 'SendEmailSuccess', data: { duplicate: false } } });
  });
});

describe('template variables the template cannot render', () => {
  // An object whose own "toString" is not a function: Handlebars' '' + value throws. Accepted, it
  // failed an attempt worker at every attempt, waited out each lease as "outcome unknown" and
  // went round the whole retry ladder into a dead letter.
  const hostile = { code: { toString: 1 }, expiresInMinutes: 10 };

  it('on the stream: quarantined as invalid_field naming the template, nothing queued, the next command accepted', async () => {
    const key = `unrenderable-${randomUUID()}`;
    await xadd({ source: 'billing', idempotencyKey: key, to: 'render@customers.test', payload: { mode: 'template', templateId: 'login-code', variables: hostile } });
    const next = await xadd({ source: 'billing', idempotencyKey: `${key}-next`, to: 'render@customers.test', payload: { mode: 'template', templateId: 'login-code', variables: { code: '1', expiresInMinutes: 10 } } });
    await streamHandledUpTo(next);
    // (The next command's raw text holds this key too, but it was accepted: not quarantined.)
    expect(await quarantinedFor(key)).toEqual([
      { failure_code: 'invalid_field', failure_detail: expect.stringMatching(/^"variables" of template "login-code": the variables cannot be rendered by the template \(locale en\)/), source: 'billing' },
    ]);
    expect(await rowsFor(key)).toEqual([]);
    expect(await rowsFor(`${key}-next`)).toHaveLength(1);
  });

  it('through sendEmail: a ValidationError on template.variables, recorded like every refused command', async () => {
    const key = `unrenderable-${randomUUID()}`;
    const query = 'mutation($input: SendEmailInput!) { sendEmail(input: $input) { __typename ... on ValidationError { field code message } } }';
    const answer = await gql(api, billing, query, { input: { to: 'render@customers.test', idempotencyKey: key, template: { id: 'login-code', variables: hostile } } });
    expect(answer.body).toEqual({
      data: { sendEmail: { __typename: 'ValidationError', field: 'template.variables', code: 'INVALID_INPUT', message: expect.stringMatching(/cannot be rendered by the template/) } },
    });
    expect(await quarantinedFor(key)).toEqual([{ failure_code: 'invalid_field', failure_detail: expect.stringMatching(/cannot be rendered/), source: 'billing' }]);
    expect(await rowsFor(key)).toEqual([]);
  });
});

describe('a suppressed address in another spelling', () => {
  it('NFD for NFC, upper case, a root dot, a Unicode domain for its A-labels: each is the suppressed address; a +tag is another', async () => {
    // Suppressed through the API, as an operator does, in the composed spelling.
    const admin = await mintToken(db.pool, ['suppressions:write'], `suppress-${randomUUID().slice(0, 8)}`);
    const suppressed = await gql(api, admin, 'mutation($a: String!) { addSuppression(input: { address: $a }) { __typename } }', { a: 'j\u00f6rg@b\u00fccher.test' });
    expect(suppressed.body.data).toEqual({ addSuppression: { __typename: 'AddSuppressionSuccess' } });
    const spellings = {
      nfd: 'jo\u0308rg@bu\u0308cher.test',
      upper: 'J\u00d6RG@B\u00dcCHER.TEST',
      'root dot, A-labels': 'jo\u0308rg@xn--bcher-kva.test.',
      tag: 'j\u00f6rg+news@b\u00fccher.test',
    };
    const key = `spelling-${randomUUID()}`;
    let last = '';
    for (const [name, to] of Object.entries(spellings)) {
      last = await xadd({ source: 'billing', idempotencyKey: `${key}-${name}`, to, payload: { mode: 'rendered', subject: 's', text: 't' } });
    }
    await streamHandledUpTo(last);
    const statuses = await waitFor(
      'every spelling delivered or suppressed',
      async () => {
        const { rows } = await db.pool.query<{ key: string; recipient: string; status: string }>(
          "SELECT idempotency_key AS key, recipient, status FROM mail.deliveries WHERE idempotency_key LIKE $1 || '-%' ORDER BY idempotency_key",
          [key],
        );
        return rows;
      },
      (rows) => rows.length === 4 && rows.every((row) => row.status === 'suppressed' || row.status === 'sent'),
      { timeoutMs: 30_000 },
    );
    expect(Object.fromEntries(statuses.map((row) => [row.key.slice(key.length + 1), [row.recipient, row.status]]))).toEqual({
      nfd: ['j\u00f6rg@xn--bcher-kva.test', 'suppressed'],
      upper: ['j\u00f6rg@xn--bcher-kva.test', 'suppressed'],
      'root dot, A-labels': ['j\u00f6rg@xn--bcher-kva.test', 'suppressed'],
      tag: ['j\u00f6rg+news@xn--bcher-kva.test', 'sent'],
    });
  });
});

describe('a stream producer reads why its commands were refused, with its own token', () => {
  const REFUSED = `query($after: DateTime!) {
    malformedCommands(first: 50, filter: { receivedAfter: $after }) { edges { node { streamEntryId channel source failureCode failureDetail } } }
  }`;

  it("billing's token lists billing's refused entries alone; crm's its own; queue:read every one, unreadable and posing ones included", async () => {
    const billingReader = await mintToken(db.pool, ['deliveries:read'], 'billing-reader', 'billing');
    const crmReader = await mintToken(db.pool, ['deliveries:read'], 'crm-reader', 'crm');
    // A token of its own producer, api:posed: the stream may not send as it.
    const posed = await mintToken(db.pool, ['deliveries:read'], 'posed');
    const operator = await mintToken(db.pool, ['queue:read'], 'stream-operator');
    const { rows } = await db.pool.query<{ now: Date }>('SELECT now() AS now');
    const since = (rows[0] as { now: Date }).now.toISOString();
    const key = `refused-${randomUUID()}`;
    const rendered = { mode: 'rendered', subject: 's', text: 't' };

    const billingUnknownTemplate = await xadd({ source: 'billing', idempotencyKey: `${key}-1`, to: 'r@customers.test', payload: { mode: 'template', templateId: 'no-such-template', variables: {} } });
    const crmBadAddress = await xadd({ source: 'crm', idempotencyKey: `${key}-2`, to: 'not an address', payload: rendered });
    const billingNoRecipient = (await redis.xadd(COMMAND_STREAM, '*', 'schema_version', '1', 'source', 'billing', 'idempotency_key', `${key}-3`, 'payload_mode', 'rendered', 'subject', 's', 'text', 't')) as string;
    const unreadable = (await redis.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', `{"source":"billing","idempotencyKey":"${key}-4"`)) as string;
    const posing = await xadd({ source: 'api:posed', idempotencyKey: `${key}-5`, to: 'r@customers.test', payload: rendered });
    await streamHandledUpTo(posing);

    // In the stream's order (two engines quarantine them in whatever order they finish).
    const byEntry = (a: { streamEntryId: string }, b: { streamEntryId: string }) => {
      const [aMs, aSeq] = a.streamEntryId.split('-').map(Number) as [number, number];
      const [bMs, bSeq] = b.streamEntryId.split('-').map(Number) as [number, number];
      return aMs - bMs || aSeq - bSeq;
    };
    const entries = async (token: string) =>
      // biome-ignore lint/suspicious/noExplicitAny: read loosely.
      (await gqlData(api, token, REFUSED, { after: since })).malformedCommands.edges.map((edge: any) => edge.node).sort(byEntry);
    expect(await entries(billingReader)).toEqual([
      { streamEntryId: billingUnknownTemplate, channel: 'stream', source: 'billing', failureCode: 'unknown_template', failureDetail: expect.stringContaining('no-such-template') },
      { streamEntryId: billingNoRecipient, channel: 'stream', source: 'billing', failureCode: 'missing_field', failureDetail: expect.stringContaining('recipient') },
    ]);
    expect(await entries(crmReader)).toEqual([{ streamEntryId: crmBadAddress, channel: 'stream', source: 'crm', failureCode: 'invalid_address', failureDetail: expect.any(String) }]);
    expect(await entries(posed)).toEqual([]);
    // biome-ignore lint/suspicious/noExplicitAny: read loosely.
    expect((await entries(operator)).map((entry: any) => [entry.streamEntryId, entry.source, entry.failureCode])).toEqual([
      [billingUnknownTemplate, 'billing', 'unknown_template'],
      [crmBadAddress, 'crm', 'invalid_address'],
      [billingNoRecipient, 'billing', 'missing_field'],
      [unreadable, null, 'invalid_json'],
      [posing, 'api:posed', 'invalid_field'],
    ]);
  });
});
