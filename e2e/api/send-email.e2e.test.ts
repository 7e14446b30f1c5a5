// sendEmail runs the same intake as the Redis Stream: a template command is checked against the
// catalog, reserved under its idempotency key and queued; the engine delivers it to the sink.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import { captureLogs, metricSample, type TestDatabase, waitFor, waitForSinkEmails } from '../harness/index.ts';
import { closeApiFile, gqlData, mintToken, openApiFile, startTestApi } from './helpers/api.ts';
import { startTestEngine } from './helpers/engine.ts';

let db: TestDatabase;
let api: Api;
let engine: Engine;
let sender: string;
let reader: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-send'));
  engine = await startTestEngine(db.dsn);
  sender = await mintToken(db.pool, ['send'], 'billing-service');
  reader = await mintToken(db.pool, ['deliveries:read:any', 'queue:read', 'attempts:read']);
});

afterAll(() => closeApiFile(db, api, engine));

const SEND = `mutation($input: SendEmailInput!) {
  sendEmail(input: $input) {
    __typename
    ... on SendEmailSuccess { data { duplicate delivery { id status recipient source payloadMode template { id locale hash } } } }
    ... on Error { message }
    ... on ValidationError { field code }
  }
}`;

function uniqueRecipient(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}@customers.test`;
}

async function deliveryStatus(id: string): Promise<string> {
  const data = await gqlData(api, reader, 'query($id: ID!) { delivery(id: $id) { status } }', { id });
  return data.delivery.status;
}

describe('sendEmail', () => {
  it('a template command is delivered at the sink and reads back as sent', async () => {
    const to = uniqueRecipient('login');
    const data = await gqlData(api, sender, SEND, {
      input: { to, idempotencyKey: `login-${to}`, template: { id: 'login-code', locale: 'de-AT', variables: { code: '493817', expiresInMinutes: 10 } } },
    });
    expect(data.sendEmail).toMatchObject({
      __typename: 'SendEmailSuccess',
      data: { duplicate: false, delivery: { recipient: to, source: 'api:billing-service', payloadMode: 'template', template: { id: 'login-code', locale: 'de' } } },
    });
    const id = data.sendEmail.data.delivery.id as string;
    const [mail] = await waitForSinkEmails(to, 1, { timeoutMs: 20_000 });
    expect(mail?.text ?? mail?.html ?? '').toContain('493817');
    await waitFor(`delivery ${id} sent`, () => deliveryStatus(id), (status) => status === 'sent');

    const read = await gqlData(api, reader, 'query($id: ID!) { delivery(id: $id) { attemptCount attempts { attemptNumber status smtpCode } deadLetter { id } category urgent } }', { id });
    // login-code is an authsession template: urgent (MAIL_URGENT_CATEGORIES' default).
    expect(read.delivery).toMatchObject({ attemptCount: 1, attempts: [{ attemptNumber: 1, status: 'sent', smtpCode: 250 }], deadLetter: null, category: 'authsession', urgent: true });
  });

  it('the same key twice is one delivery (duplicate: true), one mail', async () => {
    const to = uniqueRecipient('dup');
    const input = { to, idempotencyKey: 'order-1234-receipt', rendered: { subject: 'Your receipt', text: 'Thanks for order 1234' } };
    const first = await gqlData(api, sender, SEND, { input });
    const second = await gqlData(api, sender, SEND, { input });
    expect(first.sendEmail.data.duplicate).toBe(false);
    expect(second.sendEmail.data).toMatchObject({ duplicate: true, delivery: { id: first.sendEmail.data.delivery.id } });
    const { rows } = await db.pool.query('SELECT id FROM mail.deliveries WHERE recipient = $1', [to]);
    expect(rows).toHaveLength(1);
    await waitForSinkEmails(to, 1, { timeoutMs: 20_000 });
    await waitFor(`delivery to ${to} sent`, () => deliveryStatus(first.sendEmail.data.delivery.id), (status) => status === 'sent');
    // The delivery is finished and was sent once: a third request still makes nothing new.
    const third = await gqlData(api, sender, SEND, { input });
    expect(third.sendEmail.data.duplicate).toBe(true);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM mail.attempts a JOIN mail.deliveries d ON d.id = a.delivery_id WHERE d.recipient = $1', [to])).rows[0].n).toBe(1);
  });

  it('the same key with other content is a conflict, quarantined as a malformed api command', async () => {
    const to = uniqueRecipient('conflict');
    await gqlData(api, sender, SEND, { input: { to, idempotencyKey: 'k-conflict', rendered: { subject: 'one', text: 'one' } } });
    const clash = await gqlData(api, sender, SEND, { input: { to, idempotencyKey: 'k-conflict', rendered: { subject: 'two', text: 'two' } } });
    expect(clash.sendEmail.__typename).toBe('ConflictError');
    expect(clash.sendEmail.message).toContain('k-conflict');
    const quarantined = await gqlData(
      api,
      reader,
      '{ malformedCommands(filter: { channel: api, failureCode: idempotency_conflict }) { edges { node { channel failureCode source } } } }',
    );
    expect(quarantined.malformedCommands.edges).toContainEqual({ node: { channel: 'api', failureCode: 'idempotency_conflict', source: 'api:billing-service' } });
  });

  it.each([
    ['an unknown template', { template: { id: 'no-such-template', variables: {} } }, 'UNKNOWN_TEMPLATE', 'template.id', 'no-such-template'],
    ['a missing variable', { template: { id: 'login-code', variables: { code: '1' } } }, 'MISSING_VARIABLE', 'template.variables', 'expiresInMinutes'],
    ['an invalid address', { to: 'not an address', rendered: { subject: 's', text: 't' } }, 'INVALID_ADDRESS', 'to', ''],
    ['both template and rendered', { template: { id: 'login-code', variables: {} }, rendered: { subject: 's', text: 't' } }, 'INVALID_INPUT', 'input', 'exactly one'],
    ['rendered without a body', { rendered: { subject: 's' } }, 'INVALID_INPUT', 'rendered.text', 'html'],
  ])('refuses %s, saying so', async (_label, content, code, field, mentions) => {
    const before = (await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries')).rows[0].n;
    const data = await gqlData(api, sender, SEND, { input: { to: uniqueRecipient('bad'), idempotencyKey: randomUUID(), ...content } });
    expect(data.sendEmail).toMatchObject({ __typename: 'ValidationError', code, field });
    expect(data.sendEmail.message).toContain(mentions);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries')).rows[0].n).toBe(before);
  });
});

// The caller has the answer, but the operator sees how often commands are refused and whose:
// every refusal recorded in malformedCommands (channel api) is counted by failure code and logged
// once at info, naming its code, field and producer, never what the request held.
describe('sendEmail refusals are counted and logged', () => {
  it('one count and one line per recorded refusal, without the content; a request of the wrong shape is neither', async () => {
    const logs = captureLogs('api', 'info');
    const counted = await startTestApi(db.dsn, {}, { logger: logs.logger });
    try {
      const refusals = () => logs.lines.filter((line) => line.msg === 'sendEmail command refused');
      const count = async (code: string) => metricSample(await counted.registry.metrics(), `mail_api_commands_malformed_total{failure_code="${code}"}`);
      expect(await count('missing_variable')).toBe(0);
      expect(await count('idempotency_conflict')).toBe(0);

      const missing = await gqlData(counted, sender, SEND, {
        input: { to: uniqueRecipient('counted'), idempotencyKey: randomUUID(), template: { id: 'login-code', variables: { code: '493817' } } },
      });
      expect(missing.sendEmail).toMatchObject({ __typename: 'ValidationError', code: 'MISSING_VARIABLE', field: 'template.variables' });
      const to = uniqueRecipient('counted-conflict');
      await gqlData(counted, sender, SEND, { input: { to, idempotencyKey: 'k-counted', rendered: { subject: 'one', text: 'code 493817' } } });
      const clash = await gqlData(counted, sender, SEND, { input: { to, idempotencyKey: 'k-counted', rendered: { subject: 'two', text: 'code 493817' } } });
      expect(clash.sendEmail.__typename).toBe('ConflictError');
      // Not a command the intake could read (neither recorded nor counted, as documented).
      const shape = await gqlData(counted, sender, SEND, {
        input: { to, idempotencyKey: randomUUID(), template: { id: 'login-code', variables: {} }, rendered: { subject: 's', text: 't' } },
      });
      expect(shape.sendEmail).toMatchObject({ __typename: 'ValidationError', field: 'input' });

      expect(await count('missing_variable')).toBe(1);
      expect(await count('idempotency_conflict')).toBe(1);
      expect(refusals()).toEqual([
        expect.objectContaining({ level: 30, component: 'api', failureCode: 'missing_variable', field: 'template.variables', source: 'api:billing-service', quarantineId: expect.any(String) }),
        expect.objectContaining({ level: 30, failureCode: 'idempotency_conflict', field: 'idempotencyKey', source: 'api:billing-service', detail: expect.stringContaining('k-counted') }),
      ]);
      // Each line names its row in malformedCommands.
      const { rows } = await db.pool.query<{ failure_code: string }>('SELECT failure_code FROM mail.malformed_commands WHERE id = ANY ($1::bigint[]) ORDER BY id', [
        refusals().map((line) => line.quarantineId),
      ]);
      expect(rows.map((row) => row.failure_code)).toEqual(['missing_variable', 'idempotency_conflict']);
      expect(JSON.stringify(logs.lines)).not.toContain('493817');
      expect(logs.repeatedKeys).toEqual([]);
    } finally {
      await counted.stop();
    }
  });
});
