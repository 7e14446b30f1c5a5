// An unauthenticated flood of bearer-token lookups. Every /graphql request with an Authorization
// header of the right shape costs one PostgreSQL lookup before its body is read, so a client needs
// no token to make them: it opens a few hundred connections, sends headers with a made-up `pst_`
// token and a body it never finishes, and opens another connection for each one answered. The
// lookups used to queue on the API's whole pool, and the /readyz check (on that pool too) waited
// behind them past its 2 s limit: /readyz 503, and a load balancer took the API out. Here the
// lookups are capped below the pool, the waiting ones answered 503 with Retry-After, and readiness
// asks PostgreSQL on a connection of its own: /readyz stays 200 and a real token's query is answered.
// How fast the flood drains depends on the machine's load (the first test failed on the old code
// under load, not always); the second makes the lookups slow for certain (a lock on the table), so
// it fails on the old code every time.
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import { lockWaiters, type TestDatabase, waitFor } from '../harness/index.ts';
import { closeApiFile, mintRevokedToken, mintToken, openApiFile, origin } from './helpers/api.ts';
import { startFlood } from './helpers/token-flood.ts';

let db: TestDatabase;
let api: Api;
let admin: string;

beforeAll(async () => {
  // MAIL_POSTGRES_POOL_MAX 4 (the helpers' default): the flood outnumbers the pool a hundredfold.
  ({ db, api } = await openApiFile('api-token-flood'));
  admin = await mintToken(db.pool, ['admin']);
});

afterAll(() => closeApiFile(db, api));

const FLOOD_CONNECTIONS = 300;
const total = (answers: Map<number, number>) => [...answers.values()].reduce((sum, count) => sum + count, 0);

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${origin(api)}/metrics`, { headers: { connection: 'close' } })).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}

/** The answer to a query with this token; a 503 (lookups all taken) is retried after its Retry-After, as a client should. */
async function queryWith(token: string, deadline: number): Promise<{ status: number; body: unknown; retried: number }> {
  let retried = 0;
  for (;;) {
    const response = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, connection: 'close' },
      body: JSON.stringify({ query: '{ queueStats { deadLettersLast24h } }' }),
    });
    const body = await response.json();
    if (response.status !== 503 || Date.now() > deadline) return { status: response.status, body, retried };
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    retried += 1;
    await delay(Number(response.headers.get('retry-after')) * 1000);
  }
}

describe('a flood of bogus bearer tokens with unfinished bodies', () => {
  it('keeps /readyz 200 and answers a real token, while the flood is answered 401 or 503 with Retry-After', async () => {
    const flood = startFlood(api.http.port, FLOOD_CONNECTIONS);
    const readyz: Array<{ status: number | string; ms: number }> = [];
    try {
      // Readiness probed as a load balancer does, all through the flood, until the flood has been
      // answered many times over (each answer is one lookup done or refused) — or a deadline.
      const deadline = Date.now() + 60_000;
      while (total(flood.answers) < 5 * FLOOD_CONNECTIONS && Date.now() < deadline) {
        const started = Date.now();
        try {
          const response = await fetch(`${origin(api)}/readyz`, { headers: { connection: 'close' } });
          readyz.push({ status: response.status, ms: Date.now() - started });
          await response.body?.cancel();
        } catch (error) {
          readyz.push({ status: String(error), ms: Date.now() - started });
        }
        await delay(100);
      }
      expect(total(flood.answers), `the flood was answered: ${JSON.stringify([...flood.answers])}`).toBeGreaterThanOrEqual(5 * FLOOD_CONNECTIONS);
      expect(readyz.length).toBeGreaterThan(0);
      expect(readyz.filter((probe) => probe.status !== 200), 'every /readyz during the flood').toEqual([]);

      // A real token is answered with the flood still on; a revoked one is refused at once (no cache).
      const answered = await queryWith(admin, Date.now() + 30_000);
      expect(answered.status, JSON.stringify(answered)).toBe(200);
      expect(answered.body).toEqual({ data: { queueStats: { deadLettersLast24h: 0 } } });
      const revoked = await mintRevokedToken(db.pool, ['admin']);
      expect((await queryWith(revoked, Date.now() + 30_000)).status).toBe(401);

      // The flood got only what it asked for: 401, or 503 with Retry-After when the lookups were all taken.
      expect(flood.unexpected).toEqual([]);
      if ((flood.answers.get(503) ?? 0) > 0) expect(await metric('mail_api_token_lookups_refused_total')).toBeGreaterThan(0);
    } finally {
      await flood.stop();
    }
  }, 120_000);

  it('answers 503 with Retry-After, never a hang, while PostgreSQL holds every lookup; /readyz stays 200', async () => {
    // PostgreSQL slow to answer token lookups (here: a lock on the table, as a long migration takes):
    // the slot taken stays taken, the requests behind it are answered within a second.
    const locker = await db.pool.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE mail.api_tokens IN ACCESS EXCLUSIVE MODE');
    const flood = startFlood(api.http.port, FLOOD_CONNECTIONS);
    try {
      await waitFor(
        'token lookups waiting on the lock',
        () => lockWaiters(db.pool, 'postern-api'),
        (waiting) => waiting >= 1,
        { timeoutMs: 30_000 },
      );
      // The lookups are stuck: the process still reaches PostgreSQL, so it is ready.
      const stuck = await fetch(`${origin(api)}/readyz`, { headers: { connection: 'close' } });
      expect({ status: stuck.status, body: await stuck.json() }).toEqual({ status: 200, body: { status: 'ready', checks: { postgres: 'ok' } } });
      await waitFor('the flood answered 503 many times', () => flood.answers.get(503) ?? 0, (count) => count >= FLOOD_CONNECTIONS, { timeoutMs: 60_000 });
      const ready = await fetch(`${origin(api)}/readyz`, { headers: { connection: 'close' } });
      expect(ready.status).toBe(200);
      const busy = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}`, connection: 'close' },
        body: JSON.stringify({ query: '{ queueStats { deadLettersLast24h } }' }),
      });
      expect(busy.status).toBe(503);
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(await busy.json()).toMatchObject({ errors: [{ extensions: { code: 'SERVICE_UNAVAILABLE' } }] });
      expect(await metric('mail_api_token_lookups_refused_total')).toBeGreaterThanOrEqual(FLOOD_CONNECTIONS);
      expect(flood.unexpected).toEqual([]);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
      await flood.stop();
    }
    expect((await queryWith(admin, Date.now() + 30_000)).status).toBe(200);
  }, 120_000);
});
