// /graphql on the ops HTTP server: bearer authentication (401 before GraphQL runs; 503 with
// Retry-After when the token lookups are all taken, auth/token-lookups.ts, or PostgreSQL did not
// answer one: away, or past its statement timeout), then the body limit,
// then yoga, served through its own Node adapter. Everything else (/healthz, /readyz, /metrics)
// falls through to the ops server.
import { isUtf8 } from 'node:buffer';
import type http from 'node:http';
import { isRetryableDbError, type Logger, normalizedTraceparent, type RouteHandler, requestTarget, sendJson } from '@postern/shared';
import { TOKEN_LOOKUP_LIMITS, type TokenLookups } from '../auth/token-lookups.ts';
import type { Principal } from '../context.ts';
import type { ApiYoga } from './create-yoga.ts';
import type { ApiMetrics } from './operation-metrics.ts';

/** 1 MiB: a rendered HTML mail fits; a request to exhaust memory does not. */
export const MAX_REQUEST_BODY_BYTES = 1024 * 1024;

/** The host yoga's adapter puts in the URL it builds; only the path and query mean anything. */
const FIXED_HOST = 'localhost';

class BodyTooLarge extends Error {}

// What GraphQL over HTTP uses; anything else (TRACE, PUT, ...) is answered here, before yoga.
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

function authorizationHeaders(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) if ((rawHeaders[index] as string).toLowerCase() === 'authorization') count += 1;
  return count;
}

/** 503 with Retry-After: not the client's fault and not an error of ours, come back in a second.
 *  The connection is closed, so a flood holding bodies open gives its connection back. */
function retryLater(response: http.ServerResponse, message: string): void {
  response.setHeader('retry-after', String(TOKEN_LOOKUP_LIMITS.retryAfterSeconds));
  response.setHeader('connection', 'close');
  sendJson(response, 503, { errors: [{ message, extensions: { code: 'SERVICE_UNAVAILABLE' } }] });
}

function unauthorized(response: http.ServerResponse, message: string): void {
  response.setHeader('www-authenticate', 'Bearer realm="postern"');
  sendJson(response, 401, { errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] });
}

export interface GraphqlRouteOptions {
  yoga: ApiYoga;
  authenticate: TokenLookups;
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
    if (!GRAPHQL_METHODS.has(method)) {
      response.setHeader('allow', [...GRAPHQL_METHODS].join(', '));
      sendJson(response, 405, { errors: [{ message: `${method} is not supported on /graphql`, extensions: { code: 'METHOD_NOT_ALLOWED' } }] });
      return true;
    }

    // The GraphiQL page itself is static HTML; the queries it sends carry the token like any other.
    const wantsGraphiql =
      options.graphiql && method === 'GET' && (request.headers.accept ?? '').includes('text/html') && !url.searchParams.has('query');
    let principal: Principal | null = null;
    if (!wantsGraphiql) {
      // Node keeps the first of several Authorization headers and drops the rest without a word: a
      // request naming two identities was served as one of them, perhaps not the one a proxy in
      // front checked or logged. A singleton field sent twice is a malformed request (RFC 9110 5.3).
      if (authorizationHeaders(request.rawHeaders) > 1) {
        sendJson(response, 400, { errors: [{ message: 'more than one Authorization header', extensions: { code: 'BAD_REQUEST' } }] });
        return true;
      }
      const authorization = request.headers.authorization;
      if (!authorization) {
        options.metrics.unauthorized.inc({ reason: 'missing' });
        unauthorized(response, 'missing bearer token: send "Authorization: Bearer <token>"');
        return true;
      }
      // Closed before it is answered: the client went away, and its lookup need not run.
      const clientGone = new AbortController();
      const onClose = () => clientGone.abort();
      response.once('close', onClose);
      let found: Awaited<ReturnType<TokenLookups>>;
      try {
        found = await options.authenticate(authorization, request.socket.remoteAddress ?? 'unknown', clientGone.signal);
      } catch (error) {
        // PostgreSQL away or too slow (its statement timeout cancelled the lookup, a lock held it):
        // the token could not be checked, which is no 500 of ours either.
        if (!isRetryableDbError(error)) throw error;
        options.metrics.tokenLookupsFailed.inc();
        options.logger.warn({ err: error }, 'a bearer-token lookup failed (PostgreSQL away or too slow): answered 503 with Retry-After');
        retryLater(response, `the token could not be checked (the database did not answer): retry in ${TOKEN_LOOKUP_LIMITS.retryAfterSeconds} s`);
        return true;
      } finally {
        response.off('close', onClose);
      }
      if (found === 'gone') return true;
      if (found === 'busy') {
        retryLater(response, `too many token checks under way: retry in ${TOKEN_LOOKUP_LIMITS.retryAfterSeconds} s`);
        return true;
      }
      principal = found;
      if (!principal) {
        options.metrics.unauthorized.inc({ reason: 'invalid' });
        unauthorized(response, 'invalid or revoked token');
        return true;
      }
    }

    // Read whole, within the limit, before yoga sees the request: its adapter takes a body already
    // read (`request.body`, as body parsers leave it) instead of streaming the socket.
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
      // JSON and form bodies are UTF-8 (RFC 8259 8.1); yoga decodes them leniently, so bytes that
      // are not (a Latin-1 "Grüße") reached the resolvers as U+FFFD and were stored and mailed
      // altered, where the stream refuses such a command (invalid_field). Refused here, unread.
      if (!isUtf8(body)) {
        sendJson(response, 400, {
          errors: [{ message: 'request body is not valid UTF-8 (RFC 8259 8.1): nothing was read', extensions: { code: 'BAD_REQUEST' } }],
        });
        return true;
      }
    }

    // The adapter builds its fetch Request's URL as `http://${Host}${request.url}`, and a URL that
    // does not parse ends as HTTP 500. It gets the target the ops server checked (path and query
    // only, so `GET http://a@a/graphql` carries no credentials) and a fixed host, so a Host header
    // the ops server lets through but no URL accepts (`Host: a:99999`) changes nothing.
    request.url = `${url.pathname}${url.search}`;
    request.headers.host = FIXED_HOST;
    response.setHeader('cache-control', 'no-store');
    const traceparent = request.headers.traceparent;
    const callerTraceparent = normalizedTraceparent(Array.isArray(traceparent) ? traceparent[0] : traceparent);
    await options.yoga(Object.assign(request, { body }), response, { principal, callerTraceparent });
    return true;
  };
}
