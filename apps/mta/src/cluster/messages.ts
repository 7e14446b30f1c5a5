// What the edge's primary and its workers (MAIL_MTA_PROCESSES > 1) tell each other over the
// cluster's IPC channel, and how a worker learns which one it is. The stop itself is a signal
// (SIGTERM), as for any Postern process (packages/shared/src/process/run-service.ts).
import type { prometheus } from '@postern/shared';

/** A worker's SMTP listener is open: sent once, after startEdge resolved. */
export interface WorkerListening {
  type: 'postern:mta-worker-listening';
  address: { host: string; port: number };
}

export const WORKER_LISTENING: WorkerListening['type'] = 'postern:mta-worker-listening';

/** The worker's slot (1..N), in its environment: a restarted worker keeps its predecessor's number.
 *  Not a MAIL_ variable: an operator does not set it (and bootConfig would call it a typo). */
export const WORKER_INDEX_VARIABLE = 'POSTERN_MTA_WORKER';

/** An IPC message of this protocol with the given type (anything else on the channel is not ours). */
function hasType(message: unknown, type: string): message is { type: string } {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

export function isWorkerListening(message: unknown): message is WorkerListening {
  return hasType(message, WORKER_LISTENING);
}

/** The primary asks a worker for its metrics (worker-metrics.ts), at every scrape of /metrics. */
export interface MetricsRequest {
  type: 'postern:mta-metrics-request';
  requestId: number;
}

export const METRICS_REQUEST: MetricsRequest['type'] = 'postern:mta-metrics-request';

/** A worker's registry as prom-client's getMetricsAsJSON() gives it. */
export type WorkerMetricsJson = Awaited<ReturnType<prometheus.Registry['getMetricsAsJSON']>>;

/** The worker's answer. */
export interface MetricsResponse {
  type: 'postern:mta-metrics-response';
  requestId: number;
  metrics: WorkerMetricsJson;
}

export const METRICS_RESPONSE: MetricsResponse['type'] = 'postern:mta-metrics-response';

export function isMetricsRequest(message: unknown): message is MetricsRequest {
  return hasType(message, METRICS_REQUEST);
}

export function isMetricsResponse(message: unknown): message is MetricsResponse {
  return hasType(message, METRICS_RESPONSE) && Array.isArray((message as { metrics?: unknown }).metrics);
}
