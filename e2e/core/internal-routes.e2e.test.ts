// The engine's internal HTTP route on a real socket and a real PostgreSQL: hostile paths are 4xx
// with a JSON reason, never 500 (measured before: /api/v1/internal/deliveries/%ff%fe gave 500).
// It asks for no token, so it answers only clients on the engine's host unless told otherwise
// (MAIL_INTERNAL_API_CLIENTS): measured before, from another container on the image's network it
// gave any delivery's recipient and replies.
import net from 'node:net';
import os from 'node:os';
import { createLogger, createMetricsRegistry, createPool, type OpsServer, type Pool, startOpsServer } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { internalRoutes } from '../../apps/core/src/http/internal-routes.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

let db: TestDatabase;
let pool: Pool;
let server: OpsServer;

beforeAll(async () => {
  db = await createTestDatabase('core-internal-routes');
  const logger = createLogger('internal-routes-e2e', 'silent');
  pool = createPool({ dsn: db.dsn, applicationName: 'internal-routes-e2e', max: 2, connectTimeoutMs: 5_000, statementTimeoutMs: 5_000, logger });
  server = await startOpsServer({
    addr: { host: '127.0.0.1', port: 0 },
    logger,
    registry: createMetricsRegistry('core'),
    readiness: {},
    handle: internalRoutes(pool, 'loopback'),
  });
});

afterAll(async () => {
  await server?.close();
  await pool?.end();
  await db?.drop();
});

/** Status and body of one raw request line: fetch would normalise the very paths under test. */
function rawGet(target: string, host = 'x', to: { port: number; address: string } = { port: server.address.port, address: '127.0.0.1' }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(to.port, to.address);
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
      resolve({ status, body: answer.slice(answer.indexOf('\r\n\r\n') + 4) });
    });
    socket.setTimeout(20_000, () => socket.destroy(new Error('no answer within 20 s')));
    socket.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 'latin1'));
  });
}

describe('GET /api/v1/internal/deliveries/{id}', () => {
  it.each([
    ['/api/v1/internal/deliveries/%ff%fe', 400, /percent-encoded UTF-8/],
    ['/api/v1/internal/deliveries/%', 400, /percent-encoded UTF-8/],
    ['/api/v1/internal/deliveries/%00', 404, /no delivery/],
    ['/api/v1/internal/deliveries/%ED%A0%80', 400, /percent-encoded UTF-8/],
    ['/api/v1/internal/deliveries/does-not-exist', 404, /no delivery does-not-exist/],
    ['/api/v1/internal/deliveries/0b0a4c2e-1f2a-4c1b-9d5e-0123456789ab', 404, /no delivery/],
  ])('%s -> %i', async (target, status, reason) => {
    const answer = await rawGet(target);
    expect(answer.status).toBe(status);
    expect(JSON.parse(answer.body).message).toMatch(reason);
  });

  it('a malformed Host header is 400, not 500', async () => {
    const answer = await rawGet('/api/v1/internal/deliveries/does-not-exist', '[');
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).message).toMatch(/Host/);
  });
});

describe('who may ask (MAIL_INTERNAL_API_CLIENTS)', () => {
  // An address of this host that is not loopback (the Docker bridge at least, where the e2e suites
  // run): a connection to it comes from it, as a neighbour's would come from its own.
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((entry) => entry !== undefined && entry.family === 'IPv4' && !entry.internal)?.address;

  async function listenEverywhere(clients: 'loopback' | 'any'): Promise<OpsServer> {
    return startOpsServer({
      addr: { host: '0.0.0.0', port: 0 },
      logger: createLogger('internal-routes-e2e', 'silent'),
      registry: createMetricsRegistry('core'),
      readiness: {},
      handle: internalRoutes(pool, clients),
    });
  }

  it('loopback: a client from another address gets 403 with the reason, /readyz still answers it; the host itself is served', async () => {
    expect(external, 'this host has no non-loopback IPv4 address to ask from').toBeDefined();
    const everywhere = await listenEverywhere('loopback');
    try {
      const from = { port: everywhere.address.port, address: external as string };
      const refused = await rawGet('/api/v1/internal/deliveries/does-not-exist', 'x', from);
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'forbidden', message: expect.stringMatching(/MAIL_INTERNAL_API_CLIENTS=loopback/) });
      expect((await rawGet('/readyz', 'x', from)).status).toBe(200);
      expect((await rawGet('/api/v1/internal/deliveries/does-not-exist', 'x', { port: everywhere.address.port, address: '127.0.0.1' })).status).toBe(404);
    } finally {
      await everywhere.close();
    }
  });

  it('any: the same client is served', async () => {
    const everywhere = await listenEverywhere('any');
    try {
      const answer = await rawGet('/api/v1/internal/deliveries/does-not-exist', 'x', { port: everywhere.address.port, address: external as string });
      expect(answer.status).toBe(404);
    } finally {
      await everywhere.close();
    }
  });
});
