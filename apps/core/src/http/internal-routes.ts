// Core's internal HTTP routes, beside /healthz, /readyz and /metrics (shared ops server):
//   GET /api/v1/internal/deliveries/{id}   one delivery, its attempts and dead-letter entry
// The runbook's smoke request (GET .../deliveries/does-not-exist) answers 404 with a JSON body.
import { decodePathSegment, type Pool, type RouteHandler, requestTarget, sendJson } from '@postern/shared';
import { getDeliveryReport } from '../queue/sql/get-delivery.ts';

const DELIVERY_ROUTE = /^\/api\/v1\/internal\/deliveries\/([^/]+)$/;

export function internalRoutes(pool: Pool): RouteHandler {
  return async (request, response) => {
    const url = requestTarget(request.url);
    const match = url ? DELIVERY_ROUTE.exec(url.pathname) : null;
    if (!match) return false;
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
