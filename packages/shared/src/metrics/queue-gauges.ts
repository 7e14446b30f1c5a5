// The queue gauges (mail_attempt_schedule_*), exported by every engine and by the API. The queue is
// one table that any process can read, and what it says matters most when no engine runs to report
// it (dead-runner: due work waited while nothing claimed it): the API is up whenever anyone can
// send, so "due work nobody claims" is seen with every engine down. Several processes export the
// same figures of the same table, so the alert rules aggregate them with max, never sum
// (ops/prometheus/postern-alerts.yml). Each process reads them in the background
// (schedule-sampler.ts): a scrape never waits for PostgreSQL.

import type { Queryable } from '../aliases/resolve-recipient.ts';
import type { Logger } from '../logging/logger.ts';
import { prometheus, type Registry } from './registry.ts';
import { type ScheduleSampler, startScheduleSampler } from './schedule-sampler.ts';
import { readScheduleStats, type ScheduleStats } from './schedule-stats.ts';

export function registerQueueGauges(registry: Registry, schedule: Pick<ScheduleSampler, 'latest' | 'ageMs'>): void {
  const { Gauge } = prometheus;
  // Before the first sample they read prom-client's initial 0 while the sample's age grows from the
  // start: an alert on a stale sample (mail_attempt_schedule_sample_age_ms) covers that.
  const queueGauge = (name: string, help: string, pick: (stats: ScheduleStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const sample = schedule.latest();
        if (sample) this.set(pick(sample.stats));
      },
    });
  queueGauge('mail_attempt_schedule_depth', 'Deliveries queued, retrying or being attempted (all engines).', (s) => s.depth);
  queueGauge('mail_attempt_schedule_oldest_age_ms', 'Age of the oldest delivery not yet finished, in ms.', (s) => s.oldestAgeMs);
  queueGauge('mail_attempt_schedule_due', 'Deliveries due now and not yet claimed.', (s) => s.due);
  queueGauge('mail_attempt_schedule_due_lag_ms', 'How long the longest-due unclaimed delivery has waited past its due time, in ms.', (s) => s.dueLagMs);
  new Gauge({
    name: 'mail_attempt_schedule_sample_age_ms',
    help: 'Age of the sample the mail_attempt_schedule_* gauges come from, in ms (grows while PostgreSQL does not answer).',
    registers: [registry],
    collect() {
      this.set(schedule.ageMs());
    },
  });
}

/** Samples the queue from `db` every intervalMs (at least 1 s) and exports it on `registry`. */
export function exportQueueGauges(options: { registry: Registry; db: Queryable; intervalMs: number; logger: Logger }): ScheduleSampler {
  const schedule = startScheduleSampler({
    read: () => readScheduleStats(options.db),
    intervalMs: Math.max(1_000, options.intervalMs),
    logger: options.logger,
  });
  registerQueueGauges(options.registry, schedule);
  return schedule;
}
