// /graphql on the ops HTTP server: body limit, then bearer authentication (401 before GraphQL runs),
// then yoga. Everything else (/healthz, /readyz, /metrics) falls through to the ops server.
import type http from 'node:http';
import { type Logger, type Pool, type RouteHandler, requestTarget, sendJson } from '@postern/shared';
import { authenticateBearer } from '../auth/bearer-token.ts';
import type { Principal } from '../context.ts';
import type { ApiYoga } from './create-yoga.ts';
import type { ApiMetrics } from './operation-metrics.ts';

/** 1 MiB: a rendered HTML mail fits; a request to exhaust memory does not. */
export const MAX_REQUEST_BODY_BYTES = 1024 * 1024;

class BodyTooLarge extends Error {}

const GRAPHQL_METHODS = new Set(['GET', 'HEAD', 'POST', 'OPTIONS']);

async function readBody(request: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? '0');
  if (declared > limit) throw new BodyTooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The request's headers as fetch Headers, or null when one is something fetch refuses to carry. */
function headersOf(request: http.IncomingMessage): Headers | null {
  const headers = new Headers();
  try {
    for (let index = 0; index + 1 < request.rawHeaders.length; index += 2) {
      headers.append(request.rawHeaders[index] as string, request.rawHeaders[index + 1] as string);
    }
  } catch {
    return null;
  }
  return headers;
}

function unauthorized(response: http.ServerResponse, message: string): void {
  response.setHeader('www-authenticate', 'Bearer realm="postern"');
  sendJson(response, 401, { errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] });
}

export interface GraphqlRouteOptions {
  yoga: ApiYoga;
  db: Pool;
  logger: Logger;
  metrics: ApiMetrics;
  graphiql: boolean;
  maxBodyBytes?: number;
}

export function graphqlRoute(options: GraphqlRouteOptions): RouteHandler {
  const maxBodyBytes = options.maxBodyBytes ?? MAX_REQUEST_BODY_BYTES;
  return async (request, response) => {
    const url = requestTarget(request.url);
    if (url?.pathname !== '/graphql') return false;
    const method = request.method ?? 'GET';
    // fetch's Request throws on TRACE, TRACK and CONNECT, which node's parser lets through.
    if (!GRAPHQL_METHODS.has(method)) {
      response.setHeader('allow', [...GRAPHQL_METHODS].join(', '));
      sendJson(response, 405, { errors: [{ message: `${method} is not supported on /graphql`, extensions: { code: 'METHOD_NOT_ALLOWED' } }] });
      return true;
    }
    const headers = headersOf(request);
    if (!headers) {
      sendJson(response, 400, { errors: [{ message: 'a request header cannot be read', extensions: { code: 'BAD_REQUEST' } }] });
      return true;
    }

    // The GraphiQL page itself is static HTML; the queries it sends carry the token like any other.
    const wantsGraphiql =
      options.graphiql && method === 'GET' && (headers.get('accept') ?? '').includes('text/html') && !url.searchParams.has('query');
    let principal: Principal | null = null;
    if (!wantsGraphiql) {
      const authorization = headers.get('authorization') ?? undefined;
      if (!authorization) {
        options.metrics.unauthorized.inc({ reason: 'missing' });
        unauthorized(response, 'missing bearer token: send "Authorization: Bearer <token>"');
        return true;
      }
      principal = await authenticateBearer(options.db, authorization);
      if (!principal) {
        options.metrics.unauthorized.inc({ reason: 'invalid' });
        unauthorized(response, 'invalid or revoked token');
        return true;
      }
    }

    let body: Buffer | undefined;
    if (method !== 'GET' && method !== 'HEAD') {
      try {
        body = await readBody(request, maxBodyBytes);
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error;
        response.setHeader('connection', 'close');
        sendJson(response, 413, {
          errors: [{ message: `request body larger than ${maxBodyBytes} bytes`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }],
        });
        request.resume();
        return true;
      }
    }

    // The URL's host is fixed: yoga needs the path and query only, and a malformed Host header
    // (`Host: [`) would make this line throw and the request end as HTTP 500.
    const fetchRequest = new Request(url, {
      method,
      headers,
      ...(body === undefined ? {} : { body: new Uint8Array(body) }),
    });
    const answer = await options.yoga.handleRequest(fetchRequest, { principal });
    const payload = Buffer.from(await answer.arrayBuffer());
    const outHeaders: Record<string, string> = {};
    answer.headers.forEach((value, key) => {
      outHeaders[key] = value;
    });
    outHeaders['content-length'] = String(payload.length);
    outHeaders['cache-control'] ??= 'no-store';
    response.writeHead(answer.status, outHeaders);
    response.end(payload);
    return true;
  };
}
