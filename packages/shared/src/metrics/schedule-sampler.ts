// The queue figures behind /metrics, sampled in the background by the engine and the API (so the
// queue is reported while no engine runs: queue-gauges.ts). Read at scrape time, they would make
// /metrics hang for as long as PostgreSQL did (16 s, measured), so a Prometheus scrape would fail
// exactly when the heartbeat and restart counters matter. So a timer reads them every interval
// — never two reads at once, so a hanging database costs one waiting query, not a pile — and a
// scrape only reads the latest sample, with its age (mail_attempt_schedule_sample_age_ms).
// The engine samples its shared site backoffs the same way (apps/core/src/relay/site-backoff-gauges.ts).
import type { Logger } from '../logging/logger.ts';
import type { ScheduleStats } from './schedule-stats.ts';

export interface ScheduleSample<T = ScheduleStats> {
  stats: T;
  /** When the sample was read (ms since the epoch). */
  at: number;
}

export interface ScheduleSampler<T = ScheduleStats> {
  /** The latest sample, or null before the first read succeeded. */
  latest(): ScheduleSample<T> | null;
  /** How old the figures are: since the last sample, or since the sampler started if none yet. */
  ageMs(): number;
  stop(): void;
}

/** `what` names the figures in the log line of a failed read (default: the queue's). */
export function startScheduleSampler<T = ScheduleStats>(options: { read: () => Promise<T>; intervalMs: number; logger: Logger; what?: string }): ScheduleSampler<T> {
  const startedAt = Date.now();
  let latest: ScheduleSample<T> | null = null;
  let reading = false;
  let stopped = false;
  const sample = async () => {
    if (reading || stopped) return;
    reading = true;
    try {
      latest = { stats: await options.read(), at: Date.now() };
    } catch (error) {
      options.logger.warn({ err: error }, `${options.what ?? 'queue figures'} could not be sampled; /metrics keeps the last sample`);
    } finally {
      reading = false;
    }
  };
  void sample();
  const timer = setInterval(() => void sample(), options.intervalMs);
  timer.unref();
  return {
    latest: () => latest,
    ageMs: () => Date.now() - (latest?.at ?? startedAt),
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
