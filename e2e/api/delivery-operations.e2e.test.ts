// Working the queue through the API: dead letters requeued (one, or by filter with a cap) and then
// delivered by a running engine; cancel only while waiting; suppressions; queue stats; workers.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import { type TestDatabase, waitFor, waitForSinkEmails } from '../harness/index.ts';
import { closeApiFile, gqlData, mintToken, openApiFile } from './helpers/api.ts';
import { insertRenderedDelivery } from './helpers/deliveries.ts';
import { startTestEngine } from './helpers/engine.ts';

let db: TestDatabase;
let api: Api;
let engine: Engine;
let operator: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-queue'));
  engine = await startTestEngine(db.dsn);
  operator = await mintToken(db.pool, ['deliveries:read:any', 'deliveries:write:any', 'queue:read', 'attempts:read', 'suppressions:read', 'suppressions:write'], 'oncall');
});

afterAll(() => closeApiFile(db, api, engine));

const recipient = (label: string) => `${label}-${randomUUID().slice(0, 8)}@customers.test`;

const REQUEUE = `mutation($input: RequeueDeadLetterInput!) {
  requeueDeadLetter(input: $input) {
    __typename
    ... on RequeueDeadLetterSuccess { data { count deliveries { id status nextAttemptAt finishedAt } } }
    ... on Error { message }
  }
}`;

async function statusOf(id: string): Promise<string> {
  const data = await gqlData(api, operator, 'query($id: ID!) { delivery(id: $id) { status } }', { id });
  return data.delivery.status;
}

describe('requeueDeadLetter', () => {
  it('puts one dead letter back in the queue; the engine delivers it', async () => {
    const to = recipient('dead');
    const id = await insertRenderedDelivery(db.pool, to, { status: 'dead_letter' });
    const listed = await gqlData(api, operator, '{ deadLetters(filter: { requeued: false }) { edges { node { reason delivery { id status } lastAttempt { smtpCode } } } } }');
    expect(listed.deadLetters.edges).toContainEqual({
      node: { reason: 'retry ladder exhausted after 3 attempts', delivery: { id, status: 'dead_letter' }, lastAttempt: { smtpCode: 451 } },
    });

    const requeued = await gqlData(api, operator, REQUEUE, { input: { deliveryId: id } });
    expect(requeued.requeueDeadLetter).toMatchObject({ __typename: 'RequeueDeadLetterSuccess', data: { count: 1, deliveries: [{ id, finishedAt: null }] } });
    await waitForSinkEmails(to, 1, { timeoutMs: 20_000 });
    await waitFor(`delivery ${id} sent`, () => statusOf(id), (status) => status === 'sent');
    const after = await gqlData(api, operator, 'query($id: ID!) { delivery(id: $id) { deadLetter { requeuedAt requeuedBy } } }', { id });
    expect(after.delivery.deadLetter.requeuedBy).toBe('token:oncall');
    expect(after.delivery.deadLetter.requeuedAt).not.toBeNull();

    const again = await gqlData(api, operator, REQUEUE, { input: { deliveryId: id } });
    expect(again.requeueDeadLetter.__typename).toBe('ConflictError');
    expect(again.requeueDeadLetter.message).toContain('sent');
  });

  it('lists, filters and requeues a dead letter the queue lifetime ended without an attempt (no last attempt)', async () => {
    const to = recipient('expired');
    const id = await insertRenderedDelivery(db.pool, to, { status: 'dead_letter' });
    // As record-outcomes.ts writes it for a delivery deferred past MAIL_QUEUE_LIFETIME: no attempt row.
    await db.pool.query('UPDATE mail.dead_letters SET last_attempt_id = NULL WHERE delivery_id = $1', [id]);
    await db.pool.query('DELETE FROM mail.attempts WHERE delivery_id = $1', [id]);
    await db.pool.query("UPDATE mail.deliveries SET queued_since = now() - interval '121 hours' WHERE id = $1", [id]);
    const listed = await gqlData(api, operator, 'query($to: String) { deadLetters(filter: { requeued: false, recipient: $to }) { edges { node { delivery { id } lastAttempt { smtpCode } } } } }', { to });
    expect(listed.deadLetters.edges).toEqual([{ node: { delivery: { id }, lastAttempt: null } }]);

    const requeued = await gqlData(api, operator, REQUEUE, { input: { filter: { recipient: to, requeued: false }, max: 5 } });
    expect(requeued.requeueDeadLetter).toMatchObject({ __typename: 'RequeueDeadLetterSuccess', data: { count: 1, deliveries: [{ id }] } });
    await waitForSinkEmails(to, 1, { timeoutMs: 20_000 });
    await waitFor(`delivery ${id} sent`, () => statusOf(id), (status) => status === 'sent');
    // The requeue started a new lifetime.
    const { rows } = await db.pool.query<{ fresh: boolean }>("SELECT queued_since > now() - interval '1 hour' AS fresh FROM mail.deliveries WHERE id = $1", [id]);
    expect(rows[0]?.fresh).toBe(true);
  });

  it('by filter, never more than the cap per call, each delivery once', async () => {
    const to = recipient('batch');
    const ids = [];
    for (let index = 0; index < 3; index++) ids.push(await insertRenderedDelivery(db.pool, to, { status: 'dead_letter' }));
    const first = await gqlData(api, operator, REQUEUE, { input: { filter: { recipient: to, requeued: false }, max: 2 } });
    const second = await gqlData(api, operator, REQUEUE, { input: { filter: { recipient: to, requeued: false }, max: 2 } });
    const third = await gqlData(api, operator, REQUEUE, { input: { filter: { recipient: to, requeued: false }, max: 2 } });
    expect([first, second, third].map((data) => data.requeueDeadLetter.data.count)).toEqual([2, 1, 0]);
    const requeuedIds = [first, second].flatMap((data) => data.requeueDeadLetter.data.deliveries.map((delivery: { id: string }) => delivery.id));
    expect(requeuedIds.sort()).toEqual([...ids].sort());
    await waitForSinkEmails(to, 3, { timeoutMs: 20_000 });

    const tooMany = await gqlData(api, operator, REQUEUE, { input: { filter: {}, max: 100000 } });
    expect(tooMany.requeueDeadLetter).toMatchObject({ __typename: 'ValidationError' });
  });

  it('names what is wrong: not a dead letter, no such delivery, neither id nor filter', async () => {
    const missing = await gqlData(api, operator, REQUEUE, { input: { deliveryId: randomUUID() } });
    expect(missing.requeueDeadLetter.__typename).toBe('NotFoundError');
    const neither = await gqlData(api, operator, REQUEUE, { input: {} });
    expect(neither.requeueDeadLetter.__typename).toBe('ValidationError');
  });
});

describe('cancelDelivery', () => {
  const CANCEL = `mutation($id: ID!) { cancelDelivery(id: $id) { __typename ... on CancelDeliverySuccess { data { status finishedAt nextAttemptAt lastError } } ... on Error { message } } }`;

  it('cancels a waiting delivery; a cancelled or sent one is refused with its status', async () => {
    const id = await insertRenderedDelivery(db.pool, recipient('later'), { status: 'retrying', dueInSeconds: 3600 });
    const cancelled = await gqlData(api, operator, CANCEL, { id });
    expect(cancelled.cancelDelivery).toMatchObject({ __typename: 'CancelDeliverySuccess', data: { status: 'cancelled', nextAttemptAt: null, lastError: 'cancelled by token:oncall' } });
    expect(cancelled.cancelDelivery.data.finishedAt).not.toBeNull();
    const twice = await gqlData(api, operator, CANCEL, { id });
    expect(twice.cancelDelivery).toMatchObject({ __typename: 'ConflictError' });
    expect(twice.cancelDelivery.message).toContain('already cancelled');

    const sentId = await insertRenderedDelivery(db.pool, recipient('sent'), { status: 'sent' });
    const sent = await gqlData(api, operator, CANCEL, { id: sentId });
    expect(sent.cancelDelivery.message).toContain('already sent');
    expect((await db.pool.query('SELECT status FROM mail.deliveries WHERE id = $1', [sentId])).rows[0].status).toBe('sent');
  });
});

describe('suppressions', () => {
  it('adds, reads, refuses a duplicate and an invalid address, removes', async () => {
    const address = recipient('bounced');
    const added = await gqlData(api, operator, 'mutation($a: String!) { addSuppression(input: { address: $a, reason: hard_bounce, note: "550 user unknown" }) { __typename ... on AddSuppressionSuccess { data { address reason createdBy } } } }', { a: address.toUpperCase() });
    expect(added.addSuppression).toEqual({ __typename: 'AddSuppressionSuccess', data: { address, reason: 'hard_bounce', createdBy: 'token:oncall' } });
    const dup = await gqlData(api, operator, 'mutation($a: String!) { addSuppression(input: { address: $a }) { __typename } }', { a: address });
    expect(dup.addSuppression.__typename).toBe('ConflictError');
    const invalid = await gqlData(api, operator, 'mutation { addSuppression(input: { address: "nope" }) { __typename ... on ValidationError { field code } } }');
    expect(invalid.addSuppression).toEqual({ __typename: 'ValidationError', field: 'address', code: 'INVALID_ADDRESS' });
    const read = await gqlData(api, operator, 'query($a: String!) { suppression(address: $a) { reason } suppressions(reason: hard_bounce) { edges { node { address } } } }', { a: address });
    expect(read.suppression).toEqual({ reason: 'hard_bounce' });
    expect(read.suppressions.edges).toContainEqual({ node: { address } });
    const removed = await gqlData(api, operator, 'mutation($a: String!) { removeSuppression(address: $a) { __typename } }', { a: address });
    expect(removed.removeSuppression.__typename).toBe('RemoveSuppressionSuccess');
    const gone = await gqlData(api, operator, 'query($a: String!) { suppression(address: $a) { reason } }', { a: address });
    expect(gone.suppression).toBeNull();
  });
});

describe('queue health', () => {
  it('queueStats counts every status and recent dead letters', async () => {
    await insertRenderedDelivery(db.pool, recipient('stats'), { status: 'retrying', dueInSeconds: 7200 });
    const stats = await gqlData(api, operator, '{ queueStats { depth { status count } oldestDueAgeMs deadLettersLast24h } }');
    const { rows } = await db.pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status');
    const expected = Object.fromEntries(rows.map((row) => [row.status, row.n]));
    for (const entry of stats.queueStats.depth) expect(entry.count).toBe(expected[entry.status] ?? 0);
    expect(stats.queueStats.depth).toHaveLength(8);
    expect(stats.queueStats.deadLettersLast24h).toBeGreaterThanOrEqual(4);
  });

  it('workers lists the running engine loops with their heartbeat age', async () => {
    const data = await waitFor(
      'engine loops in mail.workers',
      () => gqlData(api, operator, '{ workers(app: core) { workerId loop state heartbeatAgeMs restarts } }'),
      (value) => value.workers.some((worker: { workerId: string }) => worker.workerId === engine.workerId),
    );
    const mine = data.workers.filter((worker: { workerId: string }) => worker.workerId === engine.workerId);
    expect(mine.length).toBeGreaterThan(0);
    for (const worker of mine) expect(worker.heartbeatAgeMs).toBeGreaterThanOrEqual(0);
  });
});
