import { setTimeout as delay } from 'node:timers/promises';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { prometheus } from './registry.ts';
import { exportSampledGauges } from './sampled-gauges.ts';

describe('gauges from a background sample', () => {
  it('export one series per label set of the latest sample: a label set gone from it is gone from the gauge', async () => {
    const registry = new prometheus.Registry();
    const samples = [
      { total: 3, groups: { a: 1, b: 400 } },
      { total: 4, groups: { a: 0 } },
    ];
    let next = 0;
    const sampler = exportSampledGauges({
      registry,
      read: async () => samples[Math.min(next++, samples.length - 1)] as (typeof samples)[number],
      intervalMs: 1_000,
      logger: pino({ level: 'silent' }),
      what: 'test figures',
      gauges: [
        { name: 'test_total', help: 'one figure', pick: (sample) => sample.total },
        {
          name: 'test_group_lag',
          help: 'one figure per group',
          labelNames: ['group'],
          pickEach: (sample) => Object.entries(sample.groups).map(([group, value]) => ({ labels: { group }, value })),
        },
      ],
    });
    try {
      while (sampler.latest() === null) await delay(5);
      let text = await registry.metrics();
      expect(text).toMatch(/^test_total 3$/m);
      expect(text).toMatch(/^test_group_lag\{group="a"\} 1$/m);
      expect(text).toMatch(/^test_group_lag\{group="b"\} 400$/m);
      while (sampler.latest()?.stats.total !== 4) await delay(50);
      text = await registry.metrics();
      expect(text).toMatch(/^test_group_lag\{group="a"\} 0$/m);
      expect(text).not.toMatch(/group="b"/);
    } finally {
      sampler.stop();
    }
  });
});
