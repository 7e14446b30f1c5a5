import { spawnSync } from 'node:child_process';
import type { Logger } from '@postern/shared';
import { describe, expect, it, vi } from 'vitest';
import { DRAINED_BYTES_PER_COLLECTION, DrainedMemory, warnWithoutCollector } from './drained-memory.ts';

const MIB = 1024 * 1024;

function fakeLogger() {
  const warn = vi.fn();
  return { logger: { warn } as unknown as Logger, warn };
}

describe('drained memory', () => {
  it('gets V8\'s gc() in a process started without --expose-gc, once, and leaves no gc() anywhere else', () => {
    // As the container image, the systemd units and `postern mta` start the edge: plain node.
    const script = `
      import { constants, PerformanceObserver } from 'node:perf_hooks';
      import vm from 'node:vm';
      import { exposedCollector } from ${JSON.stringify(new URL('./drained-memory.ts', import.meta.url).href)};
      const before = typeof globalThis.gc;
      const gc = exposedCollector();
      const kinds = [];
      const observer = new PerformanceObserver((list) => { for (const entry of list.getEntries()) kinds.push(entry.detail.kind); });
      observer.observe({ entryTypes: ['gc'] });
      gc({ type: 'minor' });
      setTimeout(() => {
        observer.disconnect();
        console.log(JSON.stringify({
          before, collector: typeof gc, once: exposedCollector() === gc, global: typeof globalThis.gc,
          freshContext: vm.runInNewContext('typeof gc'), minor: kinds.includes(constants.NODE_PERFORMANCE_GC_MINOR),
        }));
      }, 50);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ before: 'undefined', collector: 'function', once: true, global: 'undefined', freshContext: 'undefined', minor: true });
  });

  it('runs a minor collection every DRAINED_BYTES_PER_COLLECTION drained, and says nothing at start', () => {
    const collect = vi.fn();
    const drained = new DrainedMemory(collect);
    for (let i = 0; i < (5 * MIB) / 65_536; i++) drained.drained(65_536);
    expect(collect).toHaveBeenCalledTimes(Math.floor((5 * MIB) / DRAINED_BYTES_PER_COLLECTION));
    expect(collect).toHaveBeenCalledWith({ type: 'minor' });
    const { logger, warn } = fakeLogger();
    warnWithoutCollector(logger, collect);
    expect(warn).not.toHaveBeenCalled();
  });

  it('without a collector it drains all the same and warns once at start', () => {
    const drained = new DrainedMemory(null);
    expect(() => drained.drained(10 * MIB)).not.toThrow();
    const { logger, warn } = fakeLogger();
    warnWithoutCollector(logger, null);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]?.[0]).toEqual({ collector: 'unavailable' });
  });
});
