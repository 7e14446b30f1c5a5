// Core's internal HTTP routes, beside /healthz, /readyz and /metrics (shared ops server):
//   GET /api/v1/internal/deliveries/{id}   one delivery, its attempts and dead-letter entry
// The runbook's smoke request (GET .../deliveries/does-not-exist) answers 404 with a JSON body.
import { type Pool, type RouteHandler, sendJson } from '@postern/shared';
import { getDeliveryReport } from '../queue/sql/get-delivery.ts';

const DELIVERY_ROUTE = /^\/api\/v1\/internal\/deliveries\/([^/]+)$/;

export function internalRoutes(pool: Pool): RouteHandler {
  return async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const match = DELIVERY_ROUTE.exec(url.pathname);
    if (!match) return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendJson(response, 405, { error: 'method_not_allowed', message: `${request.method} is not supported here` });
      return true;
    }
    const id = decodeURIComponent(match[1] as string);
    const report = await getDeliveryReport(pool, id);
    if (!report) sendJson(response, 404, { error: 'not_found', message: `no delivery ${id}` });
    else sendJson(response, 200, report);
    return true;
  };
}
