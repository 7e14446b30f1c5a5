import { createLogger } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { EngineEvents } from '../engine-events.ts';
import { superviseLoop } from './supervisor.ts';

const logger = createLogger('test', 'silent');

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('superviseLoop', () => {
  it('restarts a loop that throws, with backoff, and counts the restarts', async () => {
    let runs = 0;
    const events = new EngineEvents();
    const reported: string[] = [];
    events.on('loop:restart', ({ loop, error }) => reported.push(`${loop}: ${(error as Error).message}`));
    const loop = superviseLoop({
      name: 'flaky',
      logger,
      events,
      backoffBaseMs: 1,
      body: async ({ signal }) => {
        runs += 1;
        if (runs < 3) throw new Error(`boom ${runs}`);
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      },
    });
    await until(() => runs === 3 && loop.status.state === 'running');
    expect(loop.status.restarts).toBe(2);
    expect(loop.status.lastError).toBe('boom 2');
    expect(reported).toEqual(['flaky: boom 1', 'flaky: boom 2']);
    expect(await loop.stop(1_000)).toBe(true);
    expect(loop.status.state).toBe('stopped');
  });

  it('abandons a hung instance on restart() and starts a fresh one whose beats count', async () => {
    let instances = 0;
    const loop = superviseLoop({
      name: 'hangs',
      logger,
      backoffBaseMs: 1,
      body: async ({ beat, signal }) => {
        instances += 1;
        if (instances === 1) await new Promise(() => {}); // a send that never returns
        while (!signal.aborted) {
          beat();
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      },
    });
    await until(() => instances === 1);
    const staleBeat = loop.status.heartbeatAt;
    loop.restart('stalled');
    await until(() => instances === 2 && loop.status.heartbeatAt > staleBeat);
    expect(loop.status.stalls).toBe(1);
    expect(loop.status.restarts).toBe(1);
    await loop.stop(1_000);
  });

  it('tells an abandoned instance so through its own signal, and only that instance', async () => {
    const signals: AbortSignal[] = [];
    const loop = superviseLoop({
      name: 'abandoned',
      logger,
      backoffBaseMs: 1,
      body: async ({ abandoned }) => {
        signals.push(abandoned);
        await new Promise(() => {}); // stuck, as a send past every timeout
      },
    });
    await until(() => signals.length === 1);
    expect(signals[0]?.aborted).toBe(false);
    loop.restart('stalled');
    await until(() => signals.length === 2);
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[1]?.aborted).toBe(false);
    await loop.stop(10);
  });

  it('stop() gives a loop its grace period, then gives up on it', async () => {
    const loop = superviseLoop({ name: 'stubborn', logger, body: () => new Promise(() => {}) });
    expect(await loop.stop(50)).toBe(false);
    expect(loop.status.state).toBe('stopped');
  });
});
