// The small HTTP server every process runs for operators: GET /healthz (the process is alive),
// GET /readyz (its dependencies answer and its loops are alive; 503 with a JSON reason otherwise)
// and GET /metrics (Prometheus text, readiness included: readiness.ts). Apps add their own routes
// through `handle`.
//
// How long a client may hold a connection without sending a request is bounded here, not left to
// Node's defaults (headersTimeout 60 s and requestTimeout 300 s, enforced by a sweep every 30 s):
// with those, one client held 2,000 connections 83-86 s each by never finishing its headers, and a
// trickled body for five minutes. Every request these servers take fits in one or a few packets
// (the largest, a 1 MiB /graphql body, needs 35 KB/s to arrive within requestTimeout).
//
// So is how many connections are open at once (MAIL_HTTP_MAX_CONNECTIONS): each is a file
// descriptor, and a client holding thousands, each within those timeouts, leaves none for the
// database pool or the SMTP listener. At the limit the newest connection is not the one refused
// (server.maxConnections does that): under a flood it is the probe's or Prometheus's, which must
// get through. The oldest connection not being answered (idle between keep-alive requests, or its
// request still arriving) is closed to make room; a request being answered is never cut off, and
// only when every connection holds one is the new connection closed unanswered. A probe sends its
// request at once and is answered at once, so a flood would have to cycle through the whole limit
// in that time to push it out.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type stream from 'node:stream';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config/parse-values.ts';
import { childLogger } from '../logging/child-logger.ts';
import { prometheus, type Registry } from '../metrics/registry.ts';
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
  /** Default HTTP_TIMEOUTS.headersTimeoutMs. */
  headersTimeoutMs?: number;
  /** Default HTTP_TIMEOUTS.requestTimeoutMs. */
  requestTimeoutMs?: number;
  /** Connections open at once (MAIL_HTTP_MAX_CONNECTIONS); default HTTP_MAX_CONNECTIONS. */
  maxConnections?: number;
}

/** The default of MAIL_HTTP_MAX_CONNECTIONS (documented in the README). */
export const HTTP_MAX_CONNECTIONS = 1000;

/** The limits on slow clients (documented in docs/deploy.md). */
export const HTTP_TIMEOUTS = {
  /** From a connection's first byte (or its keep-alive reuse) to the end of its request headers: 408, then closed. */
  headersTimeoutMs: 10_000,
  /** From the same start to the end of the request body: 408, then closed. */
  requestTimeoutMs: 30_000,
  /** An idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: 5_000,
  /** Node checks the two timeouts above by sweeping its connections; this often, not its 30 s. */
  sweepIntervalMs: 1_000,
} as const;

/** The request's client closed the connection before the request was answered: Node destroys
 *  every request still open on it with "aborted" (ECONNRESET), whether its body was cut short, its
 *  framing refused, or it was complete but not yet read (pipelined behind others). Nobody is left
 *  to answer. */
function clientWentAway(request: http.IncomingMessage, error: unknown): boolean {
  return request.socket?.destroyed !== false && (error as NodeJS.ErrnoException | null)?.code === 'ECONNRESET';
}

export interface OpsServer {
  server: http.Server;
  address: ListenAddress;
  close(): Promise<void>;
}

/** What Node reports on 'clientError' for a request it cannot take, and how it is answered. */
function clientErrorAnswer(error: NodeJS.ErrnoException & { reason?: string }): { status: number; error: string; message: string } {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, error: 'request_timeout', message: 'the request did not arrive in time' };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, error: 'request_header_fields_too_large', message: 'request headers over 16 KiB' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, error: 'content_too_large', message: 'chunk extensions too large' };
    default: {
      // llhttp's reasons are fixed texts ("Invalid method encountered"), never the client's bytes.
      const why = error.code?.startsWith('HPE_') ? `${error.code}: ${error.reason ?? 'parse error'}` : (error.code ?? 'parse error');
      return { status: 400, error: 'bad_request', message: `the request is not HTTP/1.1 (${why})` };
    }
  }
}

/**
 * Node answers a request it cannot take — unparsable, headers over 16 KiB, past headersTimeout or
 * requestTimeout — itself, with a status line and an empty body. Every other answer of these
 * servers says what was wrong in JSON, so these do too; then the connection is closed, as Node
 * does. Like Node, nothing is written on a connection whose answer has started (a pipelined
 * request's), which would corrupt it for its client.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: stream.Duplex): void {
  const inFlight = (socket as stream.Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const answer = clientErrorAnswer(error);
    const body = JSON.stringify({ error: answer.error, message: answer.message });
    socket.write(
      `HTTP/1.1 ${answer.status} ${http.STATUS_CODES[answer.status]}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
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
  const log = childLogger(options.logger, { component: 'http' });
  const readiness = startReadinessMonitor({
    checks: options.readiness,
    registry: options.registry,
    logger: childLogger(options.logger, { component: 'readiness' }),
    checkTimeoutMs,
    intervalMs: options.readinessIntervalMs ?? 5_000,
  });
  const headersTimeout = options.headersTimeoutMs ?? HTTP_TIMEOUTS.headersTimeoutMs;
  const requestTimeout = Math.max(options.requestTimeoutMs ?? HTTP_TIMEOUTS.requestTimeoutMs, headersTimeout);
  const serverOptions: http.ServerOptions = {
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: Math.min(HTTP_TIMEOUTS.sweepIntervalMs, headersTimeout),
    keepAliveTimeout: HTTP_TIMEOUTS.keepAliveTimeoutMs,
  };
  // For close(): every open connection, and the requests being answered. A request still arriving
  // (headers or body not all in) has started no work: close() cuts it off instead of waiting for
  // its client, which could take until requestTimeout; an answer in progress is let finish.
  const connections = new Set<Socket>();
  const answering = new Set<http.IncomingMessage>();
  const maxConnections = options.maxConnections ?? HTTP_MAX_CONNECTIONS;
  const shed = new prometheus.Counter({
    name: 'mail_http_connections_shed_total',
    help: 'HTTP connections closed because MAIL_HTTP_MAX_CONNECTIONS were open: outcome "evicted" (the oldest one not being answered made room for a new one), "refused" (every one was being answered: the new one was closed unanswered).',
    labelNames: ['outcome'],
    registers: [options.registry],
  });
  /** Sockets with a request whose whole body is in and whose answer is not finished: work started. */
  const working = () => new Set([...answering].filter((request) => request.complete).map((request) => request.socket));
  const server = http.createServer(serverOptions, async (request, response) => {
    answering.add(request);
    response.once('close', () => answering.delete(request));
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
      // The client's doing, and it can do it at will: not an error line (an operator's alert) each time.
      if (clientWentAway(request, error)) {
        log.debug({ url: request.url, reason: (error as Error).message }, 'client went away before its request was answered');
        response.destroy();
        return;
      }
      log.error({ err: error, url: request.url }, 'request failed');
      if (!response.headersSent) sendJson(response, 500, { error: 'internal_error', message: 'internal error' });
      else response.destroy();
    }
  });
  server.on('clientError', answerClientError);
  server.on('connection', (socket: Socket) => {
    if (connections.size >= maxConnections) {
      // Insertion order: the oldest first.
      const busy = working();
      const idle = [...connections].find((open) => !busy.has(open));
      if (!idle) {
        shed.inc({ outcome: 'refused' });
        socket.destroy();
        return;
      }
      shed.inc({ outcome: 'evicted' });
      connections.delete(idle);
      idle.destroy();
    }
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
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
        const busy = working();
        for (const socket of connections) if (!busy.has(socket)) socket.destroy();
      }),
  };
}
