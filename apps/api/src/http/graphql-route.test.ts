// The route's side of the token lookups: a request whose client closes the connection while its
// lookup waits for a slot tells the lookups so (the signal), and nothing is written to the closed
// connection; a lookup PostgreSQL did not answer is a 503 with Retry-After, not a 500. Against a
// real HTTP server and a raw client socket; the lookups are a stand-in.
import http from 'node:http';
import net from 'node:net';
import { createLogger, createMetricsRegistry } from '@postern/shared';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TokenLookups } from '../auth/token-lookups.ts';
import type { ApiYoga } from './create-yoga.ts';
import { graphqlRoute } from './graphql-route.ts';
import { createApiMetrics } from './operation-metrics.ts';

const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function serve(authenticate: TokenLookups, metrics = createApiMetrics(createMetricsRegistry('api'))): Promise<number> {
  const route = graphqlRoute({
    yoga: {} as ApiYoga,
    authenticate,
    logger: createLogger('api', 'silent'),
    metrics,
    graphiql: false,
  });
  const server = http.createServer((request, response) => {
    // As the ops server does with what a route throws.
    Promise.resolve(route(request, response)).catch(() => {
      response.writeHead(500);
      response.end();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

describe('graphqlRoute and a client that leaves while its token lookup waits', () => {
  it('aborts the lookup\'s signal when the connection closes, and answers nothing', async () => {
    let seen: AbortSignal | undefined;
    let answer: (value: 'gone') => void = () => {};
    let client: string | undefined;
    const port = await serve((_authorization, remoteAddress, clientGone) => {
      client = remoteAddress;
      seen = clientGone;
      return new Promise((resolve) => {
        answer = resolve;
      });
    });
    const socket = net.connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => {});
    socket.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pst_${'A'.repeat(43)}\r\nContent-Length: 2\r\n\r\n{}`);
    await vi.waitFor(() => expect(seen).toBeDefined());
    expect(client).toBe('127.0.0.1');
    expect(seen?.aborted).toBe(false);
    socket.destroy();
    await vi.waitFor(() => expect(seen?.aborted).toBe(true));
    answer('gone');
    expect(Buffer.concat(received).length).toBe(0);
  });
});

describe('graphqlRoute and a token lookup PostgreSQL did not answer', () => {
  const post = (port: number) =>
    fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer pst_${'A'.repeat(43)}`, 'content-type': 'application/json' },
      body: '{"query":"{ __typename }"}',
    });

  it('answers 503 with Retry-After for a cancelled statement or a lost connection, and counts it', async () => {
    const metrics = createApiMetrics(createMetricsRegistry('api'));
    for (const code of ['57014', 'ECONNREFUSED', '57P01']) {
      const port = await serve(() => Promise.reject(Object.assign(new Error('canceling statement due to statement timeout'), { code })), metrics);
      const response = await post(port);
      expect(response.status, code).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(await response.json()).toMatchObject({ errors: [{ extensions: { code: 'SERVICE_UNAVAILABLE' } }] });
    }
    expect((await metrics.tokenLookupsFailed.get()).values[0]?.value).toBe(3);
  });

  it('leaves any other failure to the server (a 500): it is a bug, not the database being away', async () => {
    const port = await serve(() => Promise.reject(new TypeError('not a database error')));
    expect((await post(port)).status).toBe(500);
  });
});
