// One trace per message, from the edge's SMTP session to the relay's reply, across processes and
// across engines: a message to a forwarding alias is accepted by a real edge process, its first
// attempt fails on one engine process (no relay listening), and its second is sent by another
// engine started later. Every process exports to an OTLP/HTTP receiver inside the test, and the
// trace the delivery stores holds the edge's session and accept spans (with the message id of the
// 250 reply), the accept's PostgreSQL statement, both engines' claims, attempts, renders and
// sends, and the relay's replies as events; the log lines written meanwhile carry its id.

import { createAlias, createDomain } from '@postern/shared';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildEngine, spawnEngine } from '../core/helpers/child-engine.ts';
import { attemptsOf, waitForStatus } from '../core/helpers/engine.ts';
import { type ChildEdge, spawnEdge } from '../faults/helpers/child-edge.ts';
import { createTestDatabase, sinkSmtp, type TestDatabase, waitFor } from '../harness/index.ts';
import { SmtpTestClient, sendMail } from '../mta/helpers/smtp-client.ts';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './helpers/otlp-receiver.ts';

let db: TestDatabase;
let receiver: OtlpReceiver;
const children: Array<ChildEdge | ChildEngine> = [];

beforeAll(async () => {
  db = await createTestDatabase('otel-smtp');
  receiver = await startOtlpReceiver();
  await createDomain(db.pool, 'otel.test');
  await createAlias(db.pool, { domain: 'otel.test', localPart: 'desk', kind: 'forward', targets: ['desk-otel@inbox.test'] });
});

afterAll(async () => {
  for (const child of children) if (!child.exited.done) child.process.kill('SIGKILL');
  await receiver?.close();
  await db?.drop();
});

async function stopped(child: ChildEdge | ChildEngine): Promise<void> {
  child.process.kill('SIGTERM');
  await waitFor('the process to exit', () => child.exited.done, Boolean, { timeoutMs: 15_000 });
}

/** JSON log lines of a child that carry `msg`. */
function linesSaying(child: ChildEdge | ChildEngine, msg: string): Array<Record<string, unknown>> {
  return child.logLines.flatMap((line) => {
    if (!line.startsWith('{')) return [];
    const parsed = JSON.parse(line) as Record<string, unknown>;
    return parsed.msg === msg ? [parsed] : [];
  });
}

const one = (spans: ReceivedSpan[], name: string, where: (span: ReceivedSpan) => boolean = () => true): ReceivedSpan => {
  const found = spans.filter((span) => span.name === name && where(span));
  expect(found, `${name} in ${JSON.stringify(spans.map((span) => span.name))}`).toHaveLength(1);
  return found[0] as ReceivedSpan;
};

describe('a message to a forwarding alias is one trace', () => {
  it('from the SMTP session through two engines to the relay reply, and the log lines carry it', async () => {
    const unreachableRelay = await getPort();
    const engineA = await spawnEngine({
      MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
      MAIL_SMTP_ADDR: `127.0.0.1:${unreachableRelay}`,
      MAIL_RETRY_LADDER: '1h',
      ...receiver.env,
    });
    children.push(engineA);
    const smtpPort = await getPort();
    const edge = await spawnEdge(db.dsn, smtpPort, receiver.env);
    children.push(edge);

    const { client } = await SmtpTestClient.connect(smtpPort);
    await client.command('EHLO client.outside.test');
    const sent = await sendMail(client, {
      from: 'sender@outside.test',
      to: ['desk@otel.test'],
      message: 'From: <sender@outside.test>\r\nTo: <desk@otel.test>\r\nSubject: traced\r\nMessage-ID: <traced@outside.test>\r\n\r\nHello.\r\n',
    });
    await client.command('QUIT').catch(() => {});
    expect(sent.final?.code).toBe(250);
    const messageId = /queued as (\S+)/.exec(sent.final?.text ?? '')?.[1] as string;

    // The first attempt fails on engine A (nothing listens where its relay should be).
    const { rows } = await db.pool.query<{ id: string; traceparent: string | null; message_traceparent: string | null }>(
      `SELECT d.id, d.traceparent, m.traceparent AS message_traceparent
         FROM mail.deliveries d JOIN mail.messages m ON m.id = d.message_id WHERE d.message_id = $1`,
      [messageId],
    );
    expect(rows).toHaveLength(1);
    const delivery = rows[0] as (typeof rows)[number];
    expect(delivery.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(delivery.message_traceparent).toBe(delivery.traceparent);
    const traceId = (delivery.traceparent as string).slice(3, 35);
    await waitForStatus(db.pool, delivery.id, 'retrying');
    await stopped(engineA);

    // Hours later, as far as the delivery knows, another engine sends it.
    await db.pool.query('UPDATE mail.deliveries SET next_attempt_at = now() WHERE id = $1', [delivery.id]);
    const sink = sinkSmtp();
    const engineB = await spawnEngine({ MAIL_POSTGRES_PRIMARY_DSN: db.dsn, MAIL_SMTP_ADDR: `${sink.host}:${sink.port}`, ...receiver.env });
    children.push(engineB);
    await waitForStatus(db.pool, delivery.id, 'sent');
    expect((await attemptsOf(db.pool, delivery.id)).map((attempt) => attempt.status)).toEqual(['transport_failed', 'sent']);

    const spans = await waitFor(
      `the trace ${traceId} with the second attempt's recorded outcome`,
      () => receiver.trace(traceId),
      (found) => found.filter((span) => span.name === 'delivery attempt').length === 2 && found.some((span) => span.name === 'smtp session'),
      { timeoutMs: 20_000 },
    );

    // The edge: the session and its accept, named by the id of the 250 reply.
    const session = one(spans, 'smtp session');
    expect(session).toMatchObject({ service: 'postern-mta', parentSpanId: null });
    expect(session.attributes).toMatchObject({ 'postern.message_id': messageId, 'postern.smtp.reply_code': 250, 'client.address': '127.0.0.1' });
    const accept = one(spans, 'smtp accept');
    expect(accept).toMatchObject({ service: 'postern-mta', parentSpanId: session.spanId });
    expect(accept.attributes).toMatchObject({ 'postern.message_id': messageId, 'postern.deliveries': 1 });
    expect(delivery.traceparent?.slice(36, 52)).toBe(accept.spanId);
    // The instrumented pg module: the accept statement and the RCPT lookup are spans of the trace.
    const statements = spans.filter((span) => span.service === 'postern-mta' && span.name.startsWith('pg.query'));
    expect(statements.some((span) => span.parentSpanId === accept.spanId)).toBe(true);
    expect(statements.some((span) => span.parentSpanId === session.spanId)).toBe(true);

    // The engines: one claim and one attempt each, under the accept, each with its render and send.
    const claims = spans.filter((span) => span.name === 'delivery claim');
    expect(claims.map((claim) => [claim.service, claim.parentSpanId, claim.attributes['postern.attempt']])).toEqual([
      ['postern-core', accept.spanId, 1],
      ['postern-core', accept.spanId, 2],
    ]);
    const attempts = claims.map((claim) => one(spans, 'delivery attempt', (span) => span.parentSpanId === claim.spanId));
    expect(attempts.map((attempt) => attempt.attributes['postern.worker_id'])).toEqual([engineA.workerId, engineB.workerId]);
    expect(attempts.map((attempt) => attempt.attributes['postern.outcome'])).toEqual(['retrying', 'sent']);
    for (const attempt of attempts) {
      expect(attempt.attributes).toMatchObject({ 'postern.delivery_id': delivery.id, 'postern.message_id': messageId });
      one(spans, 'delivery render', (span) => span.parentSpanId === attempt.spanId);
    }
    const sends = attempts.map((attempt) => one(spans, 'smtp send', (span) => span.parentSpanId === attempt.spanId));
    expect(sends[0]?.events).toEqual([{ name: 'relay reply', attributes: expect.objectContaining({ 'postern.failure.kind': 'connection' }) }]);
    expect(sends[1]?.events).toEqual([{ name: 'relay reply', attributes: expect.objectContaining({ 'postern.smtp.reply_code': 250 }) }]);

    // Lines logged inside the spans carry the trace: the accept at the edge, each attempt's outcome.
    const accepted = linesSaying(edge, 'message accepted');
    expect(accepted.map((line) => [line.messageId, line.otel_trace_id, line.otel_span_id])).toEqual([[messageId, traceId, accept.spanId]]);
    expect(linesSaying(engineA, 'attempt failed').map((line) => line.otel_trace_id)).toEqual([traceId]);
    const delivered = linesSaying(engineB, 'delivery sent');
    expect(delivered.map((line) => [line.deliveryId, line.otel_trace_id, line.otel_span_id])).toEqual([[delivery.id, traceId, attempts[1]?.spanId]]);

    await stopped(engineB);
    await stopped(edge);
  });
});
