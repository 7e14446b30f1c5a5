// The protections in front of the resolvers: depth, alias and cost limits refuse a query before it
// runs, with a message that says which limit; CSRF prevention; a body limit; and in production
// masked errors, no introspection, no GraphiQL.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gql, mintToken, openApiFile, origin, startTestApi } from './helpers/api.ts';

let db: TestDatabase;
let api: Api;
let production: Api;
let admin: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-limits'));
  production = await startTestApi(db.dsn, { MAIL_ENV: 'production' });
  admin = await mintToken(db.pool, ['admin']);
});

afterAll(() => closeApiFile(db, api, production));

async function executedCount(): Promise<number> {
  const text = await (await fetch(`${origin(api)}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('mail_api_operations_total{') && !line.includes('outcome="rejected"'))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}

describe('query limits', () => {
  it('refuses a deep query, naming the depth limit, without executing it', async () => {
    const before = await executedCount();
    const deep = '{ deadLetters { edges { node { delivery { deadLetter { delivery { deadLetter { delivery { deadLetter { id } } } } } } } } } }';
    const answer = await gql(api, admin, deep);
    expect(answer.body.data ?? null).toBeNull();
    expect(answer.body.errors?.[0]?.message).toMatch(/depth/i);
    expect(await executedCount()).toBe(before);
  });

  it('refuses an aliased-to-death query, naming the alias limit', async () => {
    const aliases = Array.from({ length: 50 }, (_, index) => `a${index}: queueStats { deadLettersLast24h }`).join(' ');
    const answer = await gql(api, admin, `{ ${aliases} }`);
    expect(answer.body.data ?? null).toBeNull();
    expect(answer.body.errors?.[0]?.message).toMatch(/alias/i);
  });

  it('refuses a wide, costly query, naming the cost limit', async () => {
    const deliveryFields = 'id status recipient source idempotencyKey payloadMode messageId subject category envelopeFrom rfcMessageId attemptCount nextAttemptAt lastError createdAt updatedAt finishedAt template { id locale hash } attempts { id attemptNumber status smtpCode enhancedCode smtpText workerId startedAt finishedAt durationMs }';
    const wide = Array.from({ length: 14 }, (_, index) => `d${index}: deliveries(first: 100, filter: { source: "s${index}" }) { edges { cursor node { ${deliveryFields} deadLetter { id reason delivery { ${deliveryFields} } } } } }`).join(' ');
    const answer = await gql(api, admin, `{ ${wide} }`);
    expect(answer.body.data ?? null).toBeNull();
    expect(answer.body.errors?.map((error) => error.message).join(' ')).toMatch(/cost/i);
  });

  it('counts a page size in a variable as it counts one written in: the same query is refused either way', async () => {
    // graphql-armor multiplied a connection by a literal `first` only: with `first: $n` the
    // refused query below counted one row per list and ran.
    const deliveryFields = 'id status recipient source idempotencyKey subject attemptCount lastError createdAt attempts { id status smtpCode smtpText workerId durationMs }';
    const wide = (first: string) =>
      Array.from({ length: 6 }, (_, index) => `d${index}: deliveries(first: ${first}) { edges { cursor node { ${deliveryFields} deadLetter { reason delivery { ${deliveryFields} } } } } }`).join(' ');
    const literal = await gql(api, admin, `{ ${wide('100')} }`);
    expect(literal.body.errors?.[0]?.message).toMatch(/^Syntax Error: Query Cost limit of 5000 exceeded, found /);
    const before = await executedCount();
    const variable = await gql(api, admin, `query($n: Int) { ${wide('$n')} }`, { n: 100 });
    expect(variable.body.data ?? null).toBeNull();
    expect(variable.body.errors?.[0]?.message).toBe(literal.body.errors?.[0]?.message);
    // Left out, a page is 20 rows, and is counted as 20 (graphql-armor counted one).
    const omitted = await gql(api, admin, `{ ${wide('20').replaceAll('(first: 20)', '')} }`);
    expect(omitted.body.data ?? null).toBeNull();
    expect(omitted.body.errors?.[0]?.message).toBe((await gql(api, admin, `{ ${wide('20')} }`)).body.errors?.[0]?.message);
    expect(await executedCount()).toBe(before);
  });

  it('serves a page size beyond the maximum as the maximum, and counts it so: not refused as costly', async () => {
    await db.pool.query("INSERT INTO mail.domains (name) SELECT 'd' || g || '.page-cap.test' FROM generate_series(1, 101) g");
    for (const first of [101, 1000, 2147483647]) {
      const answer = await gql<{ domains: { edges: unknown[]; pageInfo: { hasNextPage: boolean } } }>(
        api,
        admin,
        `{ domains(first: ${first}) { edges { cursor node { name } } pageInfo { hasNextPage } } }`,
      );
      expect(answer.body.errors, `first: ${first}`).toBeUndefined();
      expect(answer.body.data?.domains.edges).toHaveLength(100);
      expect(answer.body.data?.domains.pageInfo.hasNextPage).toBe(true);
    }
  });

  it('still runs an ordinary operator query', async () => {
    const answer = await gql(api, admin, '{ deliveries(first: 50) { edges { node { id status attempts { status smtpCode } deadLetter { reason } } } pageInfo { hasNextPage endCursor } } queueStats { depth { status count } } }');
    expect(answer.body.errors).toBeUndefined();
  });
});

describe('HTTP-level protections', () => {
  it('refuses a request body over the limit with 413', async () => {
    const answer = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ query: '{ queueStats { deadLettersLast24h } }', variables: { padding: 'x'.repeat(2 * 1024 * 1024) } }),
    });
    expect(answer.status).toBe(413);
  });

  it('CSRF: a simple (non-preflighted) request is refused; a JSON one passes', async () => {
    const form = await fetch(api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${admin}` },
      body: 'query=mutation{addSuppression(input:{address:"csrf@victim.test"}){__typename}}',
    });
    expect(form.status).toBe(403);
    const get = await fetch(`${api.url}?query=${encodeURIComponent('{ queueStats { deadLettersLast24h } }')}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(get.status).toBe(403);
    const withHeader = await fetch(`${api.url}?query=${encodeURIComponent('{ queueStats { deadLettersLast24h } }')}`, {
      headers: { authorization: `Bearer ${admin}`, 'x-graphql-yoga-csrf': '1' },
    });
    expect(withHeader.status).toBe(200);
    expect((await db.pool.query("SELECT count(*)::int AS n FROM mail.suppressions WHERE address = 'csrf@victim.test'")).rows[0].n).toBe(0);
  });

  it('answers health, readiness and metrics with operation counts and latency', async () => {
    expect((await fetch(`${origin(api)}/healthz`)).status).toBe(200);
    const ready = await fetch(`${origin(api)}/readyz`);
    expect(ready.status).toBe(200);
    await gql(api, admin, '{ queueStats { deadLettersLast24h } }');
    const metrics = await (await fetch(`${origin(api)}/metrics`)).text();
    const line = (name: string) =>
      metrics.split('\n').find((text) => text.startsWith(`${name}{`) && text.includes('operation="query:queueStats"') && text.includes('outcome="ok"'));
    expect(Number(line('mail_api_operations_total')?.split(' ').pop())).toBeGreaterThanOrEqual(1);
    expect(Number(line('mail_api_operation_duration_ms_count')?.split(' ').pop())).toBeGreaterThanOrEqual(1);
  });
});

describe('a flood of held connections (MAIL_HTTP_MAX_CONNECTIONS)', () => {
  // Slowloris against the API's one listener: connections that never finish their headers, and
  // /graphql bodies chunked forever (each within the timeouts, 10 s and 30 s). Past the limit the
  // oldest of them are closed; probes, scrapes and queries are served throughout.
  it('serves /healthz, /metrics and /graphql while 60 connections are held open against a limit of 20', async () => {
    const small = await startTestApi(db.dsn, { MAIL_HTTP_MAX_CONNECTIONS: '20' });
    const held: net.Socket[] = [];
    const closed: Promise<void>[] = [];
    try {
      for (let index = 0; index < 60; index += 1) {
        const socket = net.connect(small.http.port, '127.0.0.1');
        held.push(socket);
        closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
        socket.on('error', () => {});
        socket.write(
          index % 2 === 0
            ? 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a'
            : `POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n`,
        );
        await new Promise((resolve) => socket.once('connect', resolve));
      }
      // Every connection reached the server; the oldest 40 were closed to stay at 20.
      const open = () => held.filter((socket) => !socket.closed).length;
      const deadline = Date.now() + 10_000;
      while (open() > 20 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(open()).toBe(20);
      expect(held.slice(40).every((socket) => !socket.closed)).toBe(true);
      const base = origin(small);
      expect((await fetch(`${base}/healthz`, { headers: { connection: 'close' } })).status).toBe(200);
      const metrics = await (await fetch(`${base}/metrics`, { headers: { connection: 'close' } })).text();
      const evicted = metrics.split('\n').find((line) => line.startsWith('mail_http_connections_shed_total{outcome="evicted"'));
      expect(Number(evicted?.split(' ').pop())).toBeGreaterThanOrEqual(41);
      const query = await fetch(small.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}`, connection: 'close' },
        body: JSON.stringify({ query: '{ queueStats { deadLettersLast24h } }' }),
      });
      expect(query.status).toBe(200);
    } finally {
      for (const socket of held) socket.destroy();
      await Promise.all(closed);
      await small.stop();
    }
  }, 30_000);
});

describe('development and production', () => {
  it('development: introspection and GraphiQL are on', async () => {
    const introspection = await gql(api, admin, '{ __schema { queryType { name } } }');
    expect(introspection.body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    const page = await fetch(api.url, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Postern GraphQL');
    // Served whole by the API, so it works with no internet: no script or style from elsewhere.
    expect(html).not.toMatch(/unpkg\.com|jsdelivr|githubusercontent/);
  });

  it('production: no introspection, no GraphiQL, masked unexpected errors', async () => {
    const introspection = await gql(production, admin, '{ __schema { queryType { name } } }');
    expect(introspection.body.data ?? null).toBeNull();
    expect(introspection.body.errors?.[0]?.message).toMatch(/introspection/i);
    const page = await fetch(production.url, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(401);

    // A statement that fails inside PostgreSQL: input cannot make one fail (it is checked at the
    // boundary), so the table is made to break it for a moment. Development shows the cause to
    // the developer, production shows nothing of it.
    const query = '{ suppressions(first: 1) { edges { node { address } } } }';
    await db.pool.query('ALTER TABLE mail.suppressions RENAME COLUMN note TO note_gone');
    try {
      const developmentAnswer = await gql(api, admin, query);
      expect(JSON.stringify(developmentAnswer.body.errors)).toMatch(/column sp\.note does not exist/);
      const failing = await gql(production, admin, query);
      expect(failing.body.errors?.[0]?.message).toBe('Unexpected error.');
      expect(JSON.stringify(failing.body)).not.toMatch(/does not exist|postgres|mail\./i);
    } finally {
      await db.pool.query('ALTER TABLE mail.suppressions RENAME COLUMN note_gone TO note');
    }
  });
});
