// PostgreSQL really stopped (docker stop) under a running edge: every RCPT is 451 4.3.0 — never a
// 550, which senders would cache (stale-alias-table, docs/incidents.md) — and the same edge answers 250 again once it is back.
import { createAlias, createDomain } from '@postern/shared';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { type DedicatedPostgres, startDedicatedPostgres, waitFor } from '../harness/index.ts';
import { rcptReply, startTestEdge } from './helpers/edge.ts';

let postgres: DedicatedPostgres;
let edge: Edge;

beforeAll(async () => {
  postgres = await startDedicatedPostgres();
  const pool = new pg.Pool({ connectionString: postgres.dsn, max: 1 });
  await createDomain(pool, 'postern.test');
  await createAlias(pool, { domain: 'postern.test', localPart: 'ops', kind: 'forward', targets: ['ops@inbox.test'] });
  await pool.end();
  edge = await startTestEdge(postgres.dsn, { MAIL_MTA_LOOKUP_TIMEOUT: '1s', MAIL_POSTGRES_CONNECT_TIMEOUT: '1s' });
});

afterAll(async () => {
  await edge?.stop();
  await postgres?.close();
});

const rcpt = (address: string) => rcptReply(edge, address);

async function readyz(): Promise<number> {
  const response = await fetch(`http://${edge.http?.host}:${edge.http?.port}/readyz`);
  return response.status;
}

describe('RCPT with PostgreSQL stopped', () => {
  it('answers 451 4.3.0 while it is down and 250 again after it returns, without restarting the edge', async () => {
    expect((await rcpt('ops@postern.test')).raw).toBe('250 2.1.5 Accepted');
    expect(await readyz()).toBe(200);

    await postgres.stop();
    // Known, unknown and foreign addresses alike: nothing can be known, so nothing is permanent.
    for (const address of ['ops@postern.test', 'nobody@postern.test', 'x@elsewhere.test']) {
      for (let attempt = 0; attempt < 3; attempt++) {
        const reply = await rcpt(address);
        expect(reply.code).toBe(451);
        expect(reply.raw).toBe('451 4.3.0 Temporary recipient lookup failure, try again later');
      }
    }
    expect(await readyz()).toBe(503);

    await postgres.start();
    const back = await waitFor('the same edge to accept again', () => rcpt('ops@postern.test'), (reply) => reply.code === 250, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    expect(back.raw).toBe('250 2.1.5 Accepted');
    expect((await rcpt('nobody@postern.test')).raw).toMatch(/^550 5\.1\.1 /);
    expect(await readyz()).toBe(200);
  });
});
