import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '@postern/shared';
import { describe, expect, it, vi } from 'vitest';
import { DRAINED_BYTES_PER_COLLECTION, DrainedMemory, EDGE_NODE_FLAGS, exposedCollector, warnWithoutCollector } from './drained-memory.ts';

const MIB = 1024 * 1024;

function fakeLogger() {
  const warn = vi.fn();
  return { logger: { warn } as unknown as Logger, warn };
}

describe('drained memory', () => {
  it('the edge is started with --expose-gc by its package, and so is this project', () => {
    const manifest = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { scripts: { start: string } };
    expect(EDGE_NODE_FLAGS).toContain('--expose-gc');
    for (const flag of EDGE_NODE_FLAGS) expect(manifest.scripts.start.split(' ')).toContain(flag);
    expect(exposedCollector()).toBe(globalThis.gc);
    expect(exposedCollector()).toBeTypeOf('function');
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

  it('without --expose-gc it drains all the same and warns once at start', () => {
    const drained = new DrainedMemory(null);
    expect(() => drained.drained(10 * MIB)).not.toThrow();
    const { logger, warn } = fakeLogger();
    warnWithoutCollector(logger, null);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]?.[0]).toEqual({ missingNodeFlags: EDGE_NODE_FLAGS });
  });
});
