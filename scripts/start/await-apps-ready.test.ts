// Against real listeners on the addresses the apps' environment gives: an app that answers 503
// before 200, one that starts listening only later, one that never gets ready, and apps with no
// listener or an address that does not parse.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import getPort from 'get-port';
import { afterEach, describe, expect, it } from 'vitest';
import { awaitAppsReady, readyzUrls, type Waiting } from './await-apps-ready.ts';

const servers: http.Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/** A /readyz that answers 503 (with a reason) `notReadyFor` times, then 200. */
async function readyz(notReadyFor: number, port = 0): Promise<{ port: number; asked: () => number }> {
  let asked = 0;
  const server = http.createServer((_, response) => {
    asked += 1;
    if (asked <= notReadyFor) response.writeHead(503).end('{"status":"not ready","checks":{"loops":"(loops not started yet)"}}');
    else response.end('{"status":"ready"}');
  });
  servers.push(server);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, asked: () => asked };
}

const fast = { intervalMs: 20, askTimeoutMs: 1_000 };

describe('awaitAppsReady', () => {
  it('waits until every app answered 200, asking again after each 503 or refused connection', async () => {
    const api = await readyz(3);
    const corePort = await getPort();
    const env = { MAIL_API_HTTP_ADDR: `127.0.0.1:${api.port}`, MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${corePort}` };
    const done = awaitAppsReady({ apps: ['api', 'core'], env, stopped: () => false, onSlow: () => {}, ...fast });
    // core listens only once api has been asked (and refused) a few times.
    while (api.asked() < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const core = await readyz(1, corePort);
    expect(await done).toBe(true);
    expect(api.asked()).toBe(4);
    expect(core.asked()).toBe(2);
  });

  it('names an app that is not ready with its last answer, and gives up when npm start stops', async () => {
    const core = await readyz(Number.POSITIVE_INFINITY);
    const env = { MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${core.port}`, MAIL_API_HTTP_ADDR: `127.0.0.1:${await getPort()}` };
    const warnings: Waiting[][] = [];
    const ready = await awaitAppsReady({
      apps: ['api', 'core'],
      env,
      stopped: () => warnings.length >= 2,
      onSlow: (waiting) => warnings.push(waiting),
      ...fast,
      warnEveryMs: 50,
    });
    expect(ready).toBe(false);
    expect(warnings[0]).toEqual([
      { app: 'api', url: `http://${env.MAIL_API_HTTP_ADDR}/readyz`, last: 'ECONNREFUSED' },
      { app: 'core', url: `http://${env.MAIL_INTERNAL_HTTP_ADDR}/readyz`, last: '503 {"status":"not ready","checks":{"loops":"(loops not started yet)"}}' },
    ]);
  });

  it('waits for no app without an HTTP listener, nor for one whose address does not parse', async () => {
    expect([...readyzUrls(['api', 'core', 'mta', 'web'], { MAIL_API_HTTP_ADDR: 'nowhere', MAIL_MTA_HTTP_ADDR: '0.0.0.0:4102' })]).toEqual([
      ['core', 'http://127.0.0.1:4001/readyz'],
      ['mta', 'http://127.0.0.1:4102/readyz'],
    ]);
    expect(await awaitAppsReady({ apps: ['web'], env: {}, stopped: () => false, onSlow: () => {}, ...fast })).toBe(true);
  });
});
