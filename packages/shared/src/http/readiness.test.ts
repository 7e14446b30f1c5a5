import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logging/logger.ts';
import { createMetricsRegistry, type Registry } from '../metrics/registry.ts';
import { type ReadinessCheck, type ReadinessMonitor, startReadinessMonitor } from './readiness.ts';

const logger = createLogger('test', 'silent');
let monitor: ReadinessMonitor | undefined;

afterEach(() => {
  monitor?.stop();
  monitor = undefined;
});

function start(checks: Record<string, ReadinessCheck>, intervalMs = 60_000): Registry {
  const registry = createMetricsRegistry('test');
  monitor = startReadinessMonitor({ checks, registry, logger, checkTimeoutMs: 100, intervalMs });
  return registry;
}

async function gauges(registry: Registry): Promise<string[]> {
  const text = await registry.metrics();
  return text.split('\n').filter((line) => /^mail_(process_ready|readiness_check_ok)\{/.test(line));
}

async function until(registry: Registry, wanted: string[]): Promise<void> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const seen = await gauges(registry);
    if (wanted.every((line) => seen.includes(line))) return;
    if (Date.now() > deadline) expect(seen).toEqual(expect.arrayContaining(wanted));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('readiness monitor', () => {
  it('reports each check and the whole as gauges, on its own, without anyone asking', async () => {
    let postgresUp = true;
    const registry = start(
      {
        postgres: async () => {
          if (!postgresUp) throw new Error('connect ECONNREFUSED');
        },
        smtp: async () => {},
      },
      20,
    );
    await until(registry, [
      'mail_process_ready{app="test"} 1',
      'mail_readiness_check_ok{check="postgres",app="test"} 1',
      'mail_readiness_check_ok{check="smtp",app="test"} 1',
    ]);
    postgresUp = false;
    await until(registry, [
      'mail_process_ready{app="test"} 0',
      'mail_readiness_check_ok{check="postgres",app="test"} 0',
      'mail_readiness_check_ok{check="smtp",app="test"} 1',
    ]);
    postgresUp = true;
    await until(registry, ['mail_process_ready{app="test"} 1', 'mail_readiness_check_ok{check="postgres",app="test"} 1']);
  });

  it('is not ready until a first evaluation has shown it is', async () => {
    const registry = start({ postgres: () => new Promise(() => {}) });
    expect(await gauges(registry)).toEqual(['mail_process_ready{app="test"} 0']);
  });

  it('records what evaluate() finds, as /readyz asks it', async () => {
    let fail = false;
    const registry = start({
      redis: async () => {
        if (fail) throw new Error('PING timed out');
      },
    });
    await until(registry, ['mail_process_ready{app="test"} 1']);
    fail = true;
    expect(await monitor?.evaluate()).toEqual({ ready: false, checks: { redis: 'PING timed out' } });
    expect(await gauges(registry)).toEqual(['mail_process_ready{app="test"} 0', 'mail_readiness_check_ok{check="redis",app="test"} 0']);
  });

  it('never makes a scrape wait for a check that hangs', async () => {
    const registry = start({ postgres: () => new Promise(() => {}) }, 20);
    const began = Date.now();
    await gauges(registry);
    expect(Date.now() - began).toBeLessThan(50);
    // The hanging check is cut off after the check timeout and counts as failed.
    await until(registry, ['mail_process_ready{app="test"} 0', 'mail_readiness_check_ok{check="postgres",app="test"} 0']);
  });
});
