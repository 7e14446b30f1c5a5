import type { MessagePayload, PayloadReadOptions } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { createPayloadHolds } from './payload-holds.ts';

/** Messages of the given sizes, read through beforeRead as the lifecycle does; counts the reads. */
function store(sizes: Record<string, number>) {
  const reads: string[] = [];
  const failing = new Set<string>();
  const load = async (messageId: string, read: PayloadReadOptions): Promise<MessagePayload | null> => {
    const size = sizes[messageId];
    if (size === undefined) return null;
    await read.beforeRead?.(size);
    reads.push(messageId);
    if (failing.has(messageId)) throw new Error(`read of ${messageId} failed`);
    return { raw: Buffer.alloc(size), receivedAt: new Date(0), envelopeTo: ['to@example.test'] };
  };
  return { load, reads, failing };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

describe('payload holds', () => {
  it('reads a message only when its size fits in the budget, in the order the attempts asked, and gives the bytes back on release', async () => {
    const { load } = store({ a: 60, b: 60, c: 30 });
    const holds = createPayloadHolds({ load, budgetBytes: 100 });
    const a = await holds.hold('a');
    const order: string[] = [];
    const admitted = (messageId: string) =>
      holds.hold(messageId).then((held) => {
        order.push(messageId);
        return held;
      });
    const b = admitted('b');
    // c fits beside a, but b asked first: c does not overtake it.
    const c = admitted('c');
    await settled();
    expect(holds.bytesHeld).toBe(60);
    expect(holds.waiting).toBe(2);
    expect(order).toEqual([]);
    a?.release();
    a?.release();
    await settled();
    expect(order).toEqual(['b', 'c']);
    expect(holds.bytesHeld).toBe(90);
    (await b)?.release();
    (await c)?.release();
    expect(holds.bytesHeld).toBe(0);
    expect(holds.waiting).toBe(0);
  });

  it('reads a message larger than the whole budget once nothing else is held: alone rather than never', async () => {
    const { load } = store({ small: 10, huge: 500 });
    const holds = createPayloadHolds({ load, budgetBytes: 100 });
    const small = await holds.hold('small');
    let huge: Awaited<ReturnType<typeof holds.hold>> | undefined;
    const pending = holds.hold('huge').then((held) => {
      huge = held;
    });
    await settled();
    expect(huge).toBeUndefined();
    small?.release();
    await pending;
    expect(holds.bytesHeld).toBe(500);
    huge?.release();
    expect(holds.bytesHeld).toBe(0);
  });

  it('shares one read among the attempts of one message, charged once, given back when the last one ends', async () => {
    const { load, reads } = store({ m: 40 });
    const holds = createPayloadHolds({ load, budgetBytes: 100 });
    const [first, second, third] = await Promise.all([holds.hold('m'), holds.hold('m'), holds.hold('m')]);
    expect(reads).toEqual(['m']);
    expect(first?.payload.raw).toBe(second?.payload.raw);
    expect(holds.bytesHeld).toBe(40);
    expect(holds.shared).toBe(2);
    first?.release();
    second?.release();
    expect(holds.bytesHeld).toBe(40);
    third?.release();
    expect(holds.bytesHeld).toBe(0);
    // Once nobody holds it, the next attempt reads it again.
    (await holds.hold('m'))?.release();
    expect(reads).toEqual(['m', 'm']);
  });

  it('a message that is gone or whose read fails holds nothing, and the next attempt reads again', async () => {
    const { load, reads, failing } = store({ m: 40 });
    const holds = createPayloadHolds({ load, budgetBytes: 100 });
    expect(await holds.hold('gone')).toBeNull();
    failing.add('m');
    await expect(holds.hold('m')).rejects.toThrow('read of m failed');
    expect(holds.bytesHeld).toBe(0);
    failing.delete('m');
    const held = await holds.hold('m');
    expect(held?.payload.raw.length).toBe(40);
    expect(reads).toEqual(['m', 'm']);
    held?.release();
    expect(holds.bytesHeld).toBe(0);
  });
});
