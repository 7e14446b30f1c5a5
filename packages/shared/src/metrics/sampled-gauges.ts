// Gauges whose figures come from a background sample (schedule-sampler.ts: a scrape never waits for
// the database or Redis they are read from), each picking its figure from the latest sample; before
// the first sample they have no value to set. The engine's site backoffs and its Redis room are so.
import type { Logger } from '../logging/logger.ts';
import { prometheus, type Registry } from './registry.ts';
import { type ScheduleSampler, startScheduleSampler } from './schedule-sampler.ts';

/** A gauge of one figure, or (with `labelNames`) of one figure per label set: the series of the
 *  latest sample only, so that a label set gone from Redis or the database is gone from the gauge. */
export type SampledGauge<T> =
  | { name: string; help: string; pick: (stats: T) => number }
  | { name: string; help: string; labelNames: readonly string[]; pickEach: (stats: T) => ReadonlyArray<{ labels: Record<string, string>; value: number }> };

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
  for (const gauge of options.gauges) {
    new prometheus.Gauge({
      name: gauge.name,
      help: gauge.help,
      labelNames: 'labelNames' in gauge ? gauge.labelNames : [],
      registers: [options.registry],
      collect() {
        const sample = sampler.latest();
        if (!sample) return;
        if (!('pickEach' in gauge)) {
          this.set(gauge.pick(sample.stats));
          return;
        }
        this.reset();
        for (const { labels, value } of gauge.pickEach(sample.stats)) this.set(labels, value);
      },
    });
  }
  return sampler;
}
