// Gauges whose figures come from a background sample (schedule-sampler.ts: a scrape never waits for
// the database or Redis they are read from), each picking its figure from the latest sample; before
// the first sample they have no value to set. The engine's site backoffs and its Redis room are so.
import type { Logger } from '../logging/logger.ts';
import { prometheus, type Registry } from './registry.ts';
import { type ScheduleSampler, startScheduleSampler } from './schedule-sampler.ts';

export interface SampledGauge<T> {
  name: string;
  help: string;
  pick: (stats: T) => number;
}

/** Samples `read` every intervalMs (at least 1 s) and exports `gauges` on `registry`; `what` names
 *  the figures in the log line of a failed read. */
export function exportSampledGauges<T>(options: {
  registry: Registry;
  read: () => Promise<T>;
  intervalMs: number;
  logger: Logger;
  what: string;
  gauges: ReadonlyArray<SampledGauge<T>>;
}): ScheduleSampler<T> {
  const sampler = startScheduleSampler({ read: options.read, intervalMs: Math.max(1_000, options.intervalMs), logger: options.logger, what: options.what });
  for (const { name, help, pick } of options.gauges) {
    new prometheus.Gauge({
      name,
      help,
      registers: [options.registry],
      collect() {
        const sample = sampler.latest();
        if (sample) this.set(pick(sample.stats));
      },
    });
  }
  return sampler;
}
