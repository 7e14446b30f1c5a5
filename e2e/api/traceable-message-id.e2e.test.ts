// One id names a message from the edge's reply to the last log line: the "250 2.0.0 queued as
// <id>" a sender reads is the "id" of the Received: header the recipient's mail carries, the
// messageId the API finds its deliveries by, and the `messageId` key of every log line of the
// edge, the engine and the API that concerns it (and no other key holds it).
import { randomUUID } from 'node:crypto';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { type CapturedLogs, captureLogs, createTestDatabase, type TestDatabase, waitFor, waitForSinkEmails } from '../harness/index.ts';
import { openSession, startTestEdge } from '../mta/helpers/edge.ts';
import { sendMail } from '../mta/helpers/smtp-client.ts';
import { gql, gqlData, mintToken, startTestApi } from './helpers/api.ts';
import { startTestEngine } from './helpers/engine.ts';

let db: TestDatabase;
let edge: Edge;
let api: Api;
let engine: Engine | undefined;
let operator: string;
const logs: Record<'mta' | 'core' | 'api', CapturedLogs> = {
  mta: captureLogs('mta', 'debug'),
  core: captureLogs('core', 'debug'),
  api: captureLogs('api', 'debug'),
};

beforeAll(async () => {
  db = await createTestDatabase('api-trace');
  [edge, api] = await Promise.all([startTestEdge(db.dsn, {}, { logger: logs.mta.logger }), startTestApi(db.dsn, {}, { logger: logs.api.logger })]);
  operator = await mintToken(db.pool, ['deliveries:read:any', 'deliveries:write:any']);
});

afterAll(async () => {
  await Promise.allSettled([edge?.stop(), api?.stop(), engine?.stop()]);
  await db?.drop();
});

const BY_MESSAGE = `query($id: ID!) {
  deliveries(filter: { messageId: $id }) { edges { node { id messageId recipient status } } }
}`;

type DeliveryNode = { id: string; messageId: string; recipient: string; status: string };

async function deliveriesOf(messageId: string): Promise<DeliveryNode[]> {
  const data = await gqlData(api, operator, BY_MESSAGE, { id: messageId });
  return data.deliveries.edges.map((edge: { node: DeliveryNode }) => edge.node);
}

describe('one id for a message: SMTP reply, Received: header, API, logs', () => {
  it('the 250 reply names the id the relayed mail, the API and every log line use', async () => {
    const suffix = randomUUID().slice(0, 8);
    const [kept, cancelled] = [`kept-${suffix}@inbox.test`, `cancelled-${suffix}@inbox.test`];
    const team = `team-${suffix}@trace.test`;
    await createDomain(db.pool, 'trace.test');
    await createAlias(db.pool, { domain: 'trace.test', localPart: `team-${suffix}`, kind: 'list', targets: [kept, cancelled] });

    const client = await openSession(edge);
    const message = `From: <sender@outside.test>\r\nTo: <${team}>\r\nSubject: trace ${suffix}\r\n\r\nHello.\r\n`;
    const sent = await sendMail(client, { from: 'sender@outside.test', to: [team], message });
    await client.quit();
    const queuedAs = /^250 2\.0\.0 queued as ([0-9a-f-]{36})$/.exec(sent.final?.raw ?? '')?.[1];
    if (!queuedAs) throw new Error(`no queue id in ${JSON.stringify(sent.final?.raw)}`);

    // The API finds the message's deliveries by that id; an operator cancels one before any engine runs.
    const before = await deliveriesOf(queuedAs);
    expect(before.map((node) => [node.recipient, node.messageId, node.status]).sort()).toEqual([
      [cancelled, queuedAs, 'queued'],
      [kept, queuedAs, 'queued'],
    ]);
    const toCancel = before.find((node) => node.recipient === cancelled) as DeliveryNode;
    const cancel = await gqlData(api, operator, 'mutation($id: ID!) { cancelDelivery(id: $id) { __typename } }', { id: toCancel.id });
    expect(cancel.cancelDelivery.__typename).toBe('CancelDeliverySuccess');

    engine = await startTestEngine(db.dsn, {}, { logger: logs.core.logger });
    // The sink lists mail by its To: header: the alias the sender wrote, of which only `kept` is left.
    const [relayed] = await waitForSinkEmails(team, 1);
    expect(relayed?.envelope?.to).toEqual([expect.objectContaining({ address: kept })]);
    const received = [relayed?.headers.received ?? []].flat().join('\n');
    expect(received).toMatch(new RegExp(`\\(Postern\\) with ESMTP id ${queuedAs}\\b`));
    await waitFor('the kept delivery to read back as sent', () => deliveriesOf(queuedAs), (nodes) => nodes.some((node) => node.recipient === kept && node.status === 'sent'));

    // Each app logged the message, and wherever its id appears it is under `messageId`.
    const about = (app: keyof typeof logs) => logs[app].lines.filter((line) => JSON.stringify(line).includes(queuedAs));
    await waitFor('the engine to log the send', () => about('core'), (lines) => lines.some((line) => line.msg === 'delivery sent'));
    expect(about('mta').map((line) => line.msg)).toContain('message accepted');
    expect(about('api').map((line) => line.msg)).toEqual(['delivery cancelled']);
    for (const app of ['mta', 'core', 'api'] as const) {
      for (const line of about(app)) expect({ app, line }).toEqual({ app, line: expect.objectContaining({ messageId: queuedAs }) });
    }
  });

  it('every line the edge, the engine and the API wrote names each key once', () => {
    expect(logs.core.lines.length).toBeGreaterThan(0);
    for (const app of ['mta', 'core', 'api'] as const) expect({ app, repeated: logs[app].repeatedKeys }).toEqual({ app, repeated: [] });
  });

  it('a messageId filter that is not an id is refused as BAD_USER_INPUT', async () => {
    const answer = await gql(api, operator, BY_MESSAGE, { id: 'not-a-uuid' });
    expect(answer.body.errors?.[0]).toMatchObject({ message: expect.stringMatching(/^filter\.messageId: /), extensions: { code: 'BAD_USER_INPUT' } });
  });
});
