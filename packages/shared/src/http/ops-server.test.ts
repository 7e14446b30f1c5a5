import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logging/logger.ts';
import { createMetricsRegistry, prometheus } from '../metrics/registry.ts';
import { type OpsServer, startOpsServer } from './ops-server.ts';

const logger = createLogger('test', 'silent');
let server: OpsServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(readiness: Record<string, () => Promise<void>>) {
  const registry = createMetricsRegistry('test');
  new prometheus.Counter({ name: 'test_things_total', help: 'things', registers: [registry] }).inc(3);
  server = await startOpsServer({ addr: { host: '127.0.0.1', port: 0 }, logger, registry, readiness, checkTimeoutMs: 200 });
  return `http://127.0.0.1:${server.address.port}`;
}

describe('ops server', () => {
  it('answers /healthz, and /readyz 200 when every check passes', async () => {
    const base = await start({ database: async () => {} });
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'alive' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok' } });
  });

  it('answers /readyz 503 with the reason of each failing or hanging check', async () => {
    const base = await start({
      database: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      },
      redis: () => new Promise(() => {}),
      templates: async () => {},
    });
    const response = await fetch(`${base}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      status: 'not_ready',
      checks: { database: 'connect ECONNREFUSED 127.0.0.1:5432', redis: 'no answer within 200 ms', templates: 'ok' },
    });
  });

  it('exports what /readyz found as gauges, and answers /metrics while a check hangs', async () => {
    let hang = false;
    const base = await start({
      database: async () => {
        if (hang) await new Promise(() => {});
      },
    });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^mail_readiness_check_ok\{check="database",app="test"\} 1$/m);
    hang = true;
    const readyz = fetch(`${base}/readyz`);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^mail_process_ready\{app="test"\} 1$/m);
    expect((await readyz).status).toBe(503);
    const after = await (await fetch(`${base}/metrics`)).text();
    expect(after).toMatch(/^mail_process_ready\{app="test"\} 0$/m);
    expect(after).toMatch(/^mail_readiness_check_ok\{check="database",app="test"\} 0$/m);
  });

  it('serves Prometheus text on /metrics and JSON 404 elsewhere', async () => {
    const base = await start({});
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    expect(await metrics.text()).toMatch(/test_things_total\{app="test"\} 3/);
    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('lets an app answer its own routes first', async () => {
    const registry = createMetricsRegistry('test');
    server = await startOpsServer({
      addr: { host: '127.0.0.1', port: 0 },
      logger,
      registry,
      readiness: {},
      handle: (request, response) => {
        if (request.url !== '/hello') return false;
        response.end('hi');
        return true;
      },
    });
    expect(await (await fetch(`http://127.0.0.1:${server.address.port}/hello`)).text()).toBe('hi');
  });
});
