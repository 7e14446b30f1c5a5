import { describe, expect, it } from 'vitest';
import { registerQueueGauges } from './queue-gauges.ts';
import { createMetricsRegistry } from './registry.ts';
import type { ScheduleSample } from './schedule-sampler.ts';

describe('the queue gauges every engine and the API export', () => {
  it('report the latest sample, and its age, which grows from the start until there is one', async () => {
    let latest: ScheduleSample | null = null;
    const registry = createMetricsRegistry('api');
    registerQueueGauges(registry, { latest: () => latest, ageMs: () => 1234 });
    const before = await registry.metrics();
    expect(before).toMatch(/^mail_attempt_schedule_due_lag_ms\{app="api"\} 0$/m);
    expect(before).toMatch(/^mail_attempt_schedule_sample_age_ms\{app="api"\} 1234$/m);
    latest = { stats: { depth: 7, oldestAgeMs: 60_000, due: 3, dueLagMs: 600_000 }, at: Date.now() };
    const after = await registry.metrics();
    expect(after).toMatch(/^mail_attempt_schedule_depth\{app="api"\} 7$/m);
    expect(after).toMatch(/^mail_attempt_schedule_due\{app="api"\} 3$/m);
    expect(after).toMatch(/^mail_attempt_schedule_due_lag_ms\{app="api"\} 600000$/m);
    expect(after).toMatch(/^mail_attempt_schedule_oldest_age_ms\{app="api"\} 60000$/m);
  });
});
