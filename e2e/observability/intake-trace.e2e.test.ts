// The two other ways in continue the caller's trace: a stream command that carries a `traceparent`
// field (either schema version), and a sendEmail request that carries a traceparent header. The
// engine and the API run as real processes exporting to an OTLP/HTTP receiver inside the test; the
// delivery's stored context, its GraphQL traceId and its spans all name the caller's trace.
import { randomBytes, randomUUID } from 'node:crypto';
import type { StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { gql, mintToken, startTestApi } from '../api/helpers/api.ts';
import { type ChildApi, spawnApi } from '../api/helpers/child-api.ts';
import { type ChildEngine, spawnEngine } from '../core/helpers/child-engine.ts';
import { waitForStatus } from '../core/helpers/engine.ts';
import { startRedis } from '../harness/containers.ts';
import { createTestDatabase, sinkSmtp, type TestDatabase, waitFor } from '../harness/index.ts';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './helpers/otlp-receiver.ts';

let db: TestDatabase;
let receiver: OtlpReceiver;
let redisContainer: StartedRedisContainer;
let redis: Redis;
let engine: ChildEngine;
let api: ChildApi;
let apiUrl: string;

/** A caller's context: a trace id and the id of the caller's span, as a W3C traceparent. */
function callerContext(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

async function storedTraceparent(id: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ traceparent: string | null }>('SELECT traceparent FROM mail.deliveries WHERE id = $1', [id]);
  return rows[0]?.traceparent ?? null;
}

const SEND = `mutation Send($input: SendEmailInput!) {
  sendEmail(input: $input) { __typename ... on SendEmailSuccess { data { delivery { id traceId } } } ... on Error { message } }
}`;

beforeAll(async () => {
  db = await createTestDatabase('otel-intake');
  receiver = await startOtlpReceiver();
  redisContainer = await startRedis();
  redis = new Redis({ host: redisContainer.getHost(), port: redisContainer.getPort(), maxRetriesPerRequest: 1 });
  const sink = sinkSmtp();
  engine = await spawnEngine({
    MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
    MAIL_SMTP_ADDR: `${sink.host}:${sink.port}`,
    MAIL_REDIS_MASTER_ADDR: `${redisContainer.getHost()}:${redisContainer.getPort()}`,
    ...receiver.env,
  });
  api = await spawnApi(db.dsn, receiver.env);
  apiUrl = `${api.origin}/graphql`;
});

afterAll(async () => {
  if (api && api.process.exitCode === null) api.process.kill('SIGKILL');
  if (engine && !engine.exited.done) engine.process.kill('SIGKILL');
  redis?.disconnect();
  await redisContainer?.stop();
  await receiver?.close();
  await db?.drop();
});

/** The trace's spans once its delivery's send, and the spans `alsoFrom` names, have been exported
 *  (each process exports on its own schedule). */
function sentTrace(traceId: string, alsoFrom: (span: ReceivedSpan) => boolean = () => true): Promise<ReceivedSpan[]> {
  return waitFor(
    `the trace ${traceId} up to the relay's reply`,
    () => receiver.trace(traceId),
    (spans) =>
      spans.some((span) => span.name === 'smtp send' && span.events.some((event) => event.attributes['postern.smtp.reply_code'] === 250)) &&
      // The attempt ends last, once its outcome is committed.
      spans.some((span) => span.name === 'delivery attempt' && span.attributes['postern.outcome'] === 'sent') &&
      spans.some(alsoFrom),
    { timeoutMs: 20_000 },
  );
}

describe('a stream command with a traceparent', () => {
  it.each([
    ['v1', (key: string, to: string) => ({ schema_version: '1', source: 'billing', idempotency_key: key, recipient: to, payload_mode: 'rendered', subject: 'Traced', text: 'Hello.' })],
    [
      'v2',
      (key: string, to: string) => ({
        schema_version: '2',
        command: JSON.stringify({ source: 'billing', idempotencyKey: key, to, payload: { mode: 'rendered', subject: 'Traced', text: 'Hello.' } }),
      }),
    ],
  ])('%s: its delivery continues the producer trace', async (_version, fields) => {
    const caller = callerContext();
    const deliveryId = randomUUID();
    const key = `traced-${deliveryId}`;
    const command = fields(key, `stream-${deliveryId.slice(0, 8)}@customers.test`);
    const withId = 'command' in command
      ? { ...command, command: JSON.stringify({ ...JSON.parse(command.command as string), deliveryId }) }
      : { ...command, delivery_id: deliveryId };
    await redis.xadd(COMMAND_STREAM, '*', ...Object.entries({ ...withId, traceparent: caller.traceparent }).flat());
    await waitFor(`delivery ${deliveryId}`, () => storedTraceparent(deliveryId).catch(() => null), (value) => value !== null);
    await waitForStatus(db.pool, deliveryId, 'sent');

    const spans = await sentTrace(caller.traceId);
    const intake = spans.filter((span) => span.name === 'stream command');
    expect(intake.map((span) => [span.service, span.parentSpanId, span.attributes['postern.delivery_id'], span.attributes['postern.outcome']])).toEqual([
      ['postern-core', caller.spanId, deliveryId, 'created'],
    ]);
    expect(await storedTraceparent(deliveryId)).toBe(`00-${caller.traceId}-${intake[0]?.spanId}-01`);
    // The instrumented ioredis: the acknowledgement is a span of the command's.
    expect(spans.filter((span) => span.name === 'xack').map((span) => span.parentSpanId)).toEqual([intake[0]?.spanId]);
    const claim = spans.find((span) => span.name === 'delivery claim');
    expect(claim?.parentSpanId).toBe(intake[0]?.spanId);
    expect(spans.find((span) => span.name === 'delivery attempt')?.parentSpanId).toBe(claim?.spanId);
  });

  it('a traceparent that is not one refuses the command, naming the field', async () => {
    const deliveryId = randomUUID();
    await redis.xadd(
      COMMAND_STREAM, '*',
      'schema_version', '1', 'source', 'billing', 'idempotency_key', `bad-trace-${deliveryId}`, 'delivery_id', deliveryId,
      'recipient', 'x@customers.test', 'payload_mode', 'rendered', 'subject', 'S', 'text', 'T', 'traceparent', '00-not-a-trace-01',
    );
    const { rows } = await waitFor(
      'the command quarantined',
      () => db.pool.query<{ failure_code: string; failure_detail: string }>('SELECT failure_code, failure_detail FROM mail.malformed_commands WHERE delivery_id = $1', [deliveryId]),
      (result) => result.rows.length === 1,
    );
    expect(rows[0]).toMatchObject({ failure_code: 'invalid_field', failure_detail: expect.stringMatching(/^"traceparent" must be a W3C traceparent/) });
  });
});

describe("sendEmail continues the caller's HTTP trace", () => {
  it('the API, tracing: its request span is the caller span child, and the delivery continues it', async () => {
    const token = await mintToken(db.pool, ['send', 'deliveries:read']);
    const caller = callerContext();
    const to = `api-${randomUUID().slice(0, 8)}@customers.test`;
    const answer = await gql(apiUrl, token, SEND, { input: { to, idempotencyKey: `k-${to}`, rendered: { subject: 'Traced', text: 'Hello.' } } }, {
      traceparent: caller.traceparent,
    });
    const delivery = (answer.body.data?.sendEmail as { data?: { delivery: { id: string; traceId: string } } })?.data?.delivery;
    expect(delivery?.traceId, JSON.stringify(answer.body)).toBe(caller.traceId);
    await waitForStatus(db.pool, delivery?.id as string, 'sent');

    // The request's span ends after its response, so it may be exported after the engine's.
    const isRequest = (span: ReceivedSpan) => span.service === 'postern-api' && span.parentSpanId === caller.spanId;
    const spans = await sentTrace(caller.traceId, isRequest);
    const request = spans.filter(isRequest);
    expect(request.map((span) => span.name)).toEqual(['POST']);
    const operation = spans.find((span) => span.name === 'mutation.Send');
    expect(operation).toMatchObject({ service: 'postern-api', parentSpanId: request[0]?.spanId });
    expect((await storedTraceparent(delivery?.id as string))?.slice(36, 52)).toBe(operation?.spanId);
    expect(spans.some((span) => span.service === 'postern-api' && span.name.startsWith('pg.query'))).toBe(true);
    expect(spans.find((span) => span.name === 'delivery claim')?.parentSpanId).toBe(operation?.spanId);
  });

  describe('the API not tracing', () => {
    let untraced: Api;
    beforeAll(async () => {
      untraced = await startTestApi(db.dsn);
    });
    afterAll(() => untraced?.stop());

    it("stores the caller's own traceparent, and none without one", async () => {
      const token = await mintToken(db.pool, ['send', 'deliveries:read']);
      const caller = callerContext();
      const send = (to: string, headers: Record<string, string>) =>
        gql(untraced, token, SEND, { input: { to, idempotencyKey: `k-${to}`, rendered: { subject: 'S', text: 'T' } } }, headers);
      const traced = await send(`untraced-a-${randomUUID().slice(0, 8)}@customers.test`, { traceparent: caller.traceparent });
      const plain = await send(`untraced-b-${randomUUID().slice(0, 8)}@customers.test`, {});
      const invalid = await send(`untraced-c-${randomUUID().slice(0, 8)}@customers.test`, { traceparent: 'garbage' });
      const deliveryOf = (answer: typeof traced) => {
        const result = answer.body.data?.sendEmail as { data?: { delivery: { id: string; traceId: string | null } } } | undefined;
        if (!result?.data) throw new Error(JSON.stringify(answer.body));
        return result.data.delivery;
      };
      expect(deliveryOf(traced).traceId).toBe(caller.traceId);
      expect(await storedTraceparent(deliveryOf(traced).id)).toBe(caller.traceparent);
      expect(deliveryOf(plain).traceId).toBeNull();
      expect(deliveryOf(invalid).traceId).toBeNull();
    });
  });
});
