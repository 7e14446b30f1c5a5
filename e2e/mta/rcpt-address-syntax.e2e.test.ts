// RCPT TO with a syntactically unusable address, on a real socket: 501 5.1.3 naming the problem,
// from the same shared parser the API uses, never 550 (that would claim a lookup) nor 451.
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { openSession, rcptReply, startTestEdge } from './helpers/edge.ts';

let db: TestDatabase;
let edge: Edge;

beforeAll(async () => {
  db = await createTestDatabase('mta-rcpt-syntax');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'sales', kind: 'forward', targets: ['sales@inbox.test'] });
  edge = await startTestEdge(db.dsn);
});

afterAll(async () => {
  await edge?.stop();
  await db?.drop();
});

const rcpt = (address: string) => rcptReply(edge, address);

describe('RCPT TO address syntax', () => {
  it.each([
    [`sales@${'a'.repeat(64)}.test`, /64 octets; at most 63/],
    [`${'a'.repeat(65)}@postern.test`, /65 octets; at most 64/],
    ['sales@localhost', /not fully qualified/],
    ['sales@ev\u00adil.test', /invisible/],
    // smtp-server's own parser refuses these before the hook, with the same code.
    ['sales@postern.test/x', /syntax/],
    ['sales@ev%69l.test', /syntax/],
    ['sa..les@postern.test', /syntax/],
  ])('%s -> 501 5.1.3', async (address, reason) => {
    const reply = await rcpt(address);
    expect(reply.code).toBe(501);
    expect(reply.raw).toMatch(/5\.1\.3/);
    expect(reply.raw).toMatch(reason);
  });

  it('a well-formed address still resolves', async () => {
    expect((await rcpt('Sales@Postern.TEST')).code).toBe(250);
  });
});

describe('MAIL FROM with a reverse-path no column can hold', () => {
  it.each([
    ['a NUL', 'send\u0000er@outside.test'],
    ['a control character', 'send\u0007er@outside.test'],
  ])('%s -> 501 5.1.7, refused once, and the next transaction goes through', async (_what, from) => {
    const client = await openSession(edge);
    try {
      const refused = await client.command(`MAIL FROM:<${from}>`);
      // smtp-server's parser refuses these before the hook does (the hook's textProblem check is
      // for what a parser change might let through); never a 4xx that invites the sender to retry
      // the same unstorable path for days, never 250.
      expect(refused.code).toBe(501);
      expect(refused.raw).toMatch(/5\.1\.7/);
      expect((await client.command('MAIL FROM:<sender@outside.test>')).code).toBe(250);
      expect((await client.command('RCPT TO:<sales@postern.test>')).code).toBe(250);
    } finally {
      await client.quit();
    }
  });
});
