// The small HTTP server every process runs for operators: GET /healthz (the process is alive),
// GET /readyz (its dependencies answer and its loops are alive; 503 with a JSON reason otherwise)
// and GET /metrics (Prometheus text, readiness included: readiness.ts). Apps add their own routes
// through `handle`.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config/parse-values.ts';
import type { Registry } from '../metrics/registry.ts';
import { type ReadinessCheck, startReadinessMonitor } from './readiness.ts';
import { hostProblem, requestTarget } from './request-target.ts';

export type RouteHandler = (request: http.IncomingMessage, response: http.ServerResponse) => Promise<boolean> | boolean;

export interface OpsServerOptions {
  addr: ListenAddress;
  logger: Logger;
  registry: Registry;
  readiness: Record<string, ReadinessCheck>;
  /** Tried first; return true when the request was answered. */
  handle?: RouteHandler;
  checkTimeoutMs?: number;
  /** How often readiness is evaluated for the gauges when nobody asks /readyz (default 5 s). */
  readinessIntervalMs?: number;
}

export interface OpsServer {
  server: http.Server;
  address: ListenAddress;
  close(): Promise<void>;
}

export function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  response.end(text);
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const checkTimeoutMs = options.checkTimeoutMs ?? 2_000;
  const log = options.logger.child({ component: 'http' });
  const readiness = startReadinessMonitor({
    checks: options.readiness,
    registry: options.registry,
    logger: options.logger.child({ component: 'readiness' }),
    checkTimeoutMs,
    intervalMs: options.readinessIntervalMs ?? 5_000,
  });
  const server = http.createServer(async (request, response) => {
    try {
      // Checked before any route sees the request, so every route may parse the target itself.
      const url = requestTarget(request.url);
      const problem = url ? hostProblem(request.rawHeaders) : 'the request target is not a valid URL path';
      if (problem || !url) {
        sendJson(response, 400, { error: 'bad_request', message: problem });
        return;
      }
      if (options.handle && (await options.handle(request, response))) return;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        sendJson(response, 405, { error: 'method_not_allowed', message: `${request.method} is not supported here` });
        return;
      }
      switch (url.pathname) {
        case '/healthz':
          sendJson(response, 200, { status: 'alive' });
          return;
        case '/readyz': {
          const report = await readiness.evaluate();
          sendJson(response, report.ready ? 200 : 503, {
            status: report.ready ? 'ready' : 'not_ready',
            checks: report.checks,
          });
          return;
        }
        case '/metrics': {
          const text = await options.registry.metrics();
          response.writeHead(200, { 'content-type': options.registry.contentType });
          response.end(text);
          return;
        }
        default:
          sendJson(response, 404, { error: 'not_found', message: `no route for ${url.pathname}` });
      }
    } catch (error) {
      log.error({ err: error, url: request.url }, 'request failed');
      if (!response.headersSent) sendJson(response, 500, { error: 'internal_error', message: 'internal error' });
      else response.destroy();
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.addr.port, options.addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    readiness.stop();
    throw error;
  });
  const bound = server.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  log.info({ address: `${address.host}:${address.port}` }, 'HTTP listener open');
  return {
    server,
    address,
    close: () =>
      new Promise<void>((resolve) => {
        readiness.stop();
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
