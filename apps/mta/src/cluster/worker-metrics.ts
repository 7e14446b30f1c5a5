// The edge workers' metrics as the primary serves them on /metrics (MAIL_MTA_PROCESSES > 1): each
// worker's registry, asked for over the cluster's IPC channel at every scrape, summed with
// prom-client's aggregation (each series' own aggregator: sum, max, min, average, omit).
//
// What a plain sum of the live workers gets wrong, and this does not: a worker that dies takes its
// counts with it, so the sum of a counter would go DOWN — which Prometheus reads as a counter
// reset, and rate()/increase() then count every surviving worker's total once more (a false spike
// at every restart). Here the last counts a worker reported stay in the sum after it is gone: its
// counters and histograms (sum-aggregated, so monotonic) are kept as "retired" and added to every
// later answer; its gauges (connections open, memory) go with it. Counts a worker made after the
// last scrape it answered are lost with it — the sum is short by at most one scrape interval of one
// worker, and never goes back. A worker that does not answer in time is counted with its last
// answer (one that never answered adds nothing yet), so a busy worker makes a scrape stale, not a
// reset and not an error.
//
// The workers are asked at most once per WORKER_METRICS_MIN_INTERVAL_MS: a scrape within that time
// of the last round (or while it is under way) is answered from that round's reports. Asking at
// every scrape let anyone reaching the port make every worker serialise its registry at will (8
// clients in a loop: 1.2 s of CPU per worker in 4 s, taken from its SMTP sessions); a scrape
// interval is 15 s or more, so a second's age changes nothing Prometheus sees.
import { prometheus } from '@postern/shared';
import { isMetricsResponse, METRICS_REQUEST, type MetricsRequest, type WorkerMetricsJson } from './messages.ts';

/** What the primary needs of a worker: to send it a message (cluster.Worker fits). */
export interface MetricsSource {
  id: number;
  send(message: MetricsRequest): unknown;
}

export interface WorkerMetrics {
  /** The workers' series, aggregated, in Prometheus' text format. */
  collect(workers: readonly MetricsSource[]): Promise<string>;
  /** A message from a worker: its answer to a request, or ignored. */
  receive(workerId: number, message: unknown): void;
  /** The worker exited: its counters and histograms stay in the sum as last reported. */
  retire(workerId: number): void;
}

/** How long a scrape waits for the workers before it answers with their last reports. */
export const WORKER_METRICS_TIMEOUT_MS = 2_000;

/** Scrapes closer together than this share one round of requests to the workers. */
export const WORKER_METRICS_MIN_INTERVAL_MS = 1_000;

function isMonotonic(metric: WorkerMetricsJson[number]): boolean {
  // getMetricsAsJSON gives the type as its text ('counter'), whatever prom-client's typings say.
  const type = String(metric.type);
  return (type === 'counter' || type === 'histogram') && (metric.aggregator ?? 'sum') === 'sum';
}

type Value = WorkerMetricsJson[number]['values'][number] & { metricName?: string };

/** The dead workers' counters and histograms summed, series by series (synchronous: a scrape
 *  never sees a worker neither live nor retired). */
class Retired {
  #metrics = new Map<string, { metric: Omit<WorkerMetricsJson[number], 'values'>; values: Map<string, Value> }>();

  add(report: WorkerMetricsJson): void {
    for (const { values, ...metric } of report.filter(isMonotonic)) {
      let kept = this.#metrics.get(metric.name);
      if (!kept) {
        kept = { metric, values: new Map() };
        this.#metrics.set(metric.name, kept);
      }
      for (const value of values as Value[]) {
        const key = `${value.metricName ?? ''}|${JSON.stringify(Object.entries(value.labels).sort(([a], [b]) => a.localeCompare(b)))}`;
        const sum = kept.values.get(key);
        if (sum) sum.value += value.value;
        else kept.values.set(key, { ...value, labels: { ...value.labels } });
      }
    }
  }

  report(): WorkerMetricsJson {
    return [...this.#metrics.values()].map(({ metric, values }) => ({ ...metric, values: [...values.values()].map((value) => ({ ...value })) })) as WorkerMetricsJson;
  }
}

export function createWorkerMetrics(options: { timeoutMs?: number; minIntervalMs?: number } = {}): WorkerMetrics {
  const timeoutMs = options.timeoutMs ?? WORKER_METRICS_TIMEOUT_MS;
  const minIntervalMs = options.minIntervalMs ?? WORKER_METRICS_MIN_INTERVAL_MS;
  /** Each live worker's last answer. */
  const latest = new Map<number, WorkerMetricsJson>();
  const retired = new Retired();
  const retiredIds = new Set<number>();
  /** The answers a scrape waits for, by request and worker. */
  const waiting = new Map<string, () => void>();
  const waitKey = (requestId: number, workerId: number) => `${requestId}:${workerId}`;
  let nextRequest = 1;
  /** The last round of requests: when it started, whom it asked, and its end (every answer or the timeout). */
  let round: { startedAt: number; asked: Set<number>; done: Promise<void> } | null = null;

  const ask = (workers: readonly MetricsSource[]): Promise<void> => {
    const requestId = nextRequest++;
    return Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            const key = waitKey(requestId, worker.id);
            const done = () => {
              clearTimeout(timer);
              waiting.delete(key);
              resolve();
            };
            const timer = setTimeout(done, timeoutMs);
            waiting.set(key, done);
            try {
              worker.send({ type: METRICS_REQUEST, requestId });
            } catch {
              done();
            }
          }),
      ),
    ).then(() => undefined);
  };

  return {
    async collect(workers) {
      const now = performance.now();
      const reusable =
        round !== null && now - round.startedAt < minIntervalMs && workers.every((worker) => round?.asked.has(worker.id) === true);
      if (!reusable) round = { startedAt: now, asked: new Set(workers.map((worker) => worker.id)), done: ask(workers) };
      await round?.done;
      const reports = workers.flatMap((worker) => {
        const report = latest.get(worker.id);
        return report ? [report] : [];
      });
      reports.push(retired.report());
      return prometheus.AggregatorRegistry.aggregate(reports).metrics();
    },
    receive(workerId, message) {
      if (!isMetricsResponse(message) || retiredIds.has(workerId)) return;
      latest.set(workerId, message.metrics);
      waiting.get(waitKey(message.requestId, workerId))?.();
    },
    retire(workerId) {
      // Remembered only as long as an answer to a scrape under way could still come in.
      retiredIds.add(workerId);
      setTimeout(() => retiredIds.delete(workerId), 2 * timeoutMs).unref();
      const last = latest.get(workerId);
      latest.delete(workerId);
      if (last) retired.add(last);
    },
  };
}
