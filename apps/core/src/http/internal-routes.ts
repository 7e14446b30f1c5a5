// Core's internal HTTP routes, beside /healthz, /readyz and /metrics (shared ops server):
//   GET /api/v1/internal/deliveries/{id}   one delivery, its attempts and dead-letter entry
// The runbook's smoke request (GET .../deliveries/does-not-exist) answers 404 with a JSON body.
// They ask for no token, so by default (MAIL_INTERNAL_API_CLIENTS=loopback) they answer only clients
// on the engine's own host: the image listens on every interface so that probes and Prometheus reach
// /readyz and /metrics, and any container on the engine's network would otherwise read every
// delivery's recipient and replies. The same facts are in GraphQL, behind a token with its scopes.
import { decodePathSegment, isLoopbackAddress, type Pool, type RouteHandler, requestTarget, sendJson } from '@postern/shared';
import { getDeliveryReport } from '../queue/sql/get-delivery.ts';

const DELIVERY_ROUTE = /^\/api\/v1\/internal\/deliveries\/([^/]+)$/;

export function internalRoutes(pool: Pool, clients: 'loopback' | 'any'): RouteHandler {
  return async (request, response) => {
    const url = requestTarget(request.url);
    const match = url ? DELIVERY_ROUTE.exec(url.pathname) : null;
    if (!match) return false;
    if (clients === 'loopback' && !isLoopbackAddress(request.socket.remoteAddress)) {
      sendJson(response, 403, {
        error: 'forbidden',
        message:
          "the engine's internal API answers clients on its own host only (MAIL_INTERNAL_API_CLIENTS=loopback): ask from there, or read the delivery through GraphQL",
      });
      return true;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendJson(response, 405, { error: 'method_not_allowed', message: `${request.method} is not supported here` });
      return true;
    }
    const id = decodePathSegment(match[1] as string);
    if (id === null) {
      sendJson(response, 400, { error: 'bad_request', message: 'the delivery id is not valid percent-encoded UTF-8' });
      return true;
    }
    const report = await getDeliveryReport(pool, id);
    // JSON.stringify escapes whatever the id holds; the id is echoed only as data.
    if (!report) sendJson(response, 404, { error: 'not_found', message: `no delivery ${id}` });
    else sendJson(response, 200, report);
    return true;
  };
}
