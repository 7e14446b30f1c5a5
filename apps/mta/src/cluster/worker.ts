// One edge worker (MAIL_MTA_PROCESSES > 1): the whole edge (startEdge) on a socket of its own,
// bound with SO_REUSEPORT beside its siblings' so the kernel spreads connections among them, with
// no ops listener (the primary serves /healthz, /readyz and /metrics). It tells the primary when it
// listens, and answers the primary's requests for its metrics (worker-metrics.ts).
import cluster from 'node:cluster';
import { createMetricsRegistry, type Logger, type PosternConfig, type RunningService } from '@postern/shared';
import { startEdge } from '../edge.ts';
import { isMetricsRequest, METRICS_RESPONSE, type MetricsResponse, WORKER_INDEX_VARIABLE, WORKER_LISTENING, type WorkerListening } from './messages.ts';

/** This worker's slot, 1..N, as the primary numbered it (0 when not started by a primary). */
export function workerIndex(env: NodeJS.ProcessEnv = process.env): number {
  const index = Number(env[WORKER_INDEX_VARIABLE]);
  return Number.isInteger(index) && index > 0 ? index : 0;
}

export async function startWorker(config: PosternConfig, logger: Logger): Promise<RunningService> {
  // A message to a primary that is gone (killed while this worker started, or while it answered a
  // metrics request) fails with EPIPE, emitted on the worker: not a crash with a stack trace. Node's
  // cluster exits the worker itself when the channel closes.
  cluster.worker?.on('error', (error) => logger.warn({ err: error }, 'IPC with the primary failed'));
  // The primary's metrics requests (worker-metrics.ts) are answered with the edge's registry, from
  // before the edge starts, so that a request in the meantime is answered (with metrics not moving yet).
  const registry = createMetricsRegistry('mta');
  process.on('message', (message: unknown) => {
    if (!isMetricsRequest(message)) return;
    void registry.getMetricsAsJSON().then(
      (metrics) => {
        const response: MetricsResponse = { type: METRICS_RESPONSE, requestId: message.requestId, metrics };
        process.send?.(response);
      },
      (error: unknown) => logger.warn({ err: error }, 'metrics for the primary could not be read'),
    );
  });
  const edge = await startEdge(config, { logger, registry, http: false, reusePort: true });
  const listening: WorkerListening = { type: WORKER_LISTENING, address: edge.smtp };
  process.send?.(listening);
  return { stop: () => edge.stop() };
}
