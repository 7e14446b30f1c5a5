// Against real listeners: a ready process, one that answers 503 with its reasons, a port nobody
// listens on, and one that accepts the connection and never answers.
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseListenAddress } from '../config/parse-values.ts';
import { askReadyz, readinessUrl } from './readyz-client.ts';

const addr = (text: string) => {
  const parsed = parseListenAddress(text);
  if (!parsed.ok) throw new Error(parsed.problem);
  return parsed.value;
};

const servers: net.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    (server as http.Server).closeAllConnections?.();
    server.close();
  }
});

async function listening(server: net.Server): Promise<string> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
}

describe('readinessUrl', () => {
  it('asks wildcard binds on loopback', () => {
    expect(readinessUrl(addr('0.0.0.0:4002'))).toBe('http://127.0.0.1:4002/readyz');
    expect(readinessUrl(addr('[::]:4001'))).toBe('http://[::1]:4001/readyz');
    expect(readinessUrl(addr('10.1.2.3:4000'))).toBe('http://10.1.2.3:4000/readyz');
  });
});

describe('askReadyz', () => {
  it("gives the status and the body's start", async () => {
    const ready = await listening(http.createServer((_, response) => response.end('{"status":"ready"}')));
    expect(await askReadyz(ready, 2_000)).toEqual({ status: 200, body: '{"status":"ready"}' });
    const long = 'x'.repeat(100_000);
    const notReady = await listening(http.createServer((_, response) => response.writeHead(503).end(`{"postgres":"down"}${long}`)));
    const answer = await askReadyz(notReady, 2_000);
    expect(answer.status).toBe(503);
    expect(answer.body).toMatch(/^\{"postgres":"down"\}x+$/);
    expect(answer.body.length).toBe(500);
  });

  it('rejects when nobody listens, and when the listener never answers', async () => {
    const closed = await listening(net.createServer());
    const gone = servers.pop();
    gone?.close();
    if (gone) await once(gone, 'close');
    await expect(askReadyz(closed, 2_000)).rejects.toThrow(/ECONNREFUSED/);
    const silent = await listening(net.createServer(() => {}));
    await expect(askReadyz(silent, 300)).rejects.toThrow('no answer within 300 ms');
  });
});
