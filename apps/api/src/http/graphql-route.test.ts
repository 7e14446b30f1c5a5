// The route's side of the token-lookup cap: a request whose client closes the connection while its
// lookup waits for a slot tells the lookups so (the signal), and nothing is written to the closed
// connection. Against a real HTTP server and a raw client socket; the lookups are a stand-in that
// waits until told.
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

async function serve(authenticate: TokenLookups): Promise<number> {
  const route = graphqlRoute({
    yoga: {} as ApiYoga,
    authenticate,
    logger: createLogger('api', 'silent'),
    metrics: createApiMetrics(createMetricsRegistry('api')),
    graphiql: false,
  });
  const server = http.createServer((request, response) => {
    void route(request, response);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

describe('graphqlRoute and a client that leaves while its token lookup waits', () => {
  it('aborts the lookup\'s signal when the connection closes, and answers nothing', async () => {
    let seen: AbortSignal | undefined;
    let answer: (value: 'gone') => void = () => {};
    const port = await serve((_authorization, clientGone) => {
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
    expect(seen?.aborted).toBe(false);
    socket.destroy();
    await vi.waitFor(() => expect(seen?.aborted).toBe(true));
    answer('gone');
    expect(Buffer.concat(received).length).toBe(0);
  });
});
