import { createLogger } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { EngineEvents } from './engine-events.ts';

describe('EngineEvents', () => {
  it('hands each subscriber the payload, until it unsubscribes', () => {
    const events = new EngineEvents();
    const seen: number[] = [];
    const off = events.on('claim', ({ claimed }) => seen.push(claimed));
    events.emit('claim', { wanted: 4, claimed: 3, durationMs: 1 });
    off();
    events.emit('claim', { wanted: 4, claimed: 4, durationMs: 1 });
    expect(seen).toEqual([3]);
  });

  it('keeps a throwing listener from reaching the loop that emits, and from the other listeners', () => {
    const events = new EngineEvents(createLogger('test', 'silent'));
    const seen: string[] = [];
    events.on('loop:stall', () => {
      throw new Error('a broken subscriber');
    });
    events.on('loop:stall', ({ loop }) => seen.push(loop));
    expect(() => events.emit('loop:stall', { loop: 'scheduler', heartbeatAgeMs: 5 })).not.toThrow();
    expect(seen).toEqual(['scheduler']);
  });

  it('resolves next() with the next event of that name', async () => {
    const events = new EngineEvents();
    const next = events.next('listen:connected');
    events.emit('listen:connected', { channel: 'mail_delivery_due' });
    expect(await next).toEqual({ channel: 'mail_delivery_due' });
  });
});
