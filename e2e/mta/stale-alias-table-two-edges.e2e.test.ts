// stale-alias-table: an alias file generator got stuck on one of two MX hosts, and a new address was refused
// with 550 there — sometimes, depending on which MX answered — and senders cached the refusal. Here
// two edges share one database and no cache: an alias created through the shared code is accepted
// by both on the very next RCPT, and a disabled one refused by both, with no sleep in between.
import { createAlias, createDomain, setAliasEnabled } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { openSession, startTestEdge } from './helpers/edge.ts';
import type { SmtpTestClient } from './helpers/smtp-client.ts';

let db: TestDatabase;
let edges: Edge[] = [];
let clients: SmtpTestClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase('mta-stale-alias-table');
  await createDomain(db.pool, 'vrts.test');
  // Each trial earns its session two 550s on purpose; the per-session error limit (a harvest
  // defence, edge-defences.e2e.test.ts) is raised so that 100 trials fit in one session.
  const env = { MAIL_MTA_SOFT_ERROR_LIMIT: '1000', MAIL_MTA_HARD_ERROR_LIMIT: '1001' };
  edges = [await startTestEdge(db.dsn, env), await startTestEdge(db.dsn, env)];
  // One open session per edge, as a sender's MX connection would be; each trial is one transaction.
  clients = await Promise.all(edges.map((edge) => openSession(edge)));
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.quit()));
  await Promise.all(edges.map((edge) => edge.stop()));
  await db?.drop();
});

async function rcptOn(client: SmtpTestClient, address: string) {
  expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
  const reply = await client.command(`RCPT TO:<${address}>`);
  expect((await client.command('RSET')).code).toBe(250);
  return reply;
}

describe('stale-alias-table: a new alias is accepted by every edge on the very next RCPT', () => {
  it('100 of 100 trials: unknown on both, created, then accepted by both at once', async () => {
    const outcomes: string[] = [];
    for (let trial = 0; trial < 100; trial++) {
      const address = `queue-${trial}@vrts.test`;
      const before = await Promise.all(clients.map((client) => rcptOn(client, address)));
      expect(before.map((reply) => `${reply.code} ${reply.enhanced}`)).toEqual(['550 5.1.1', '550 5.1.1']);
      await createAlias(db.pool, { domain: 'vrts.test', localPart: `queue-${trial}`, kind: 'forward', targets: ['agent@inbox.test'] });
      const after = await Promise.all(clients.map((client) => rcptOn(client, address)));
      outcomes.push(after.map((reply) => reply.raw).join(' | '));
    }
    expect(outcomes.filter((outcome) => outcome === '250 2.1.5 Accepted | 250 2.1.5 Accepted')).toHaveLength(100);
  });

  it('an alias disabled is refused by both edges on the very next RCPT, and accepted again when re-enabled', async () => {
    await createAlias(db.pool, { domain: 'vrts.test', localPart: 'dcw', kind: 'list', targets: ['a@inbox.test', 'b@inbox.test'] });
    for (const client of clients) expect((await rcptOn(client, 'dcw@vrts.test')).code).toBe(250);
    await setAliasEnabled(db.pool, { domain: 'vrts.test', localPart: 'dcw' }, false);
    for (const client of clients) expect((await rcptOn(client, 'DCW@vrts.test')).raw).toMatch(/^550 5\.1\.1 /);
    await setAliasEnabled(db.pool, { domain: 'vrts.test', localPart: 'dcw' }, true);
    for (const client of clients) expect((await rcptOn(client, 'dcw@VRTS.test')).code).toBe(250);
  });
});
