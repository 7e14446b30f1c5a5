import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { claimSize } from './claim-size.ts';

const sizing = { concurrency: 8, batchSize: 32, claimAhead: 32 };
const idle = { waiting: 0, busy: 0, awaitingCommit: 0 };

describe('claimSize', () => {
  it('claims one delivery per free worker slot', () => {
    expect(claimSize(sizing, idle)).toBe(8);
    expect(claimSize(sizing, { ...idle, busy: 5 })).toBe(3);
    expect(claimSize(sizing, { ...idle, busy: 5, waiting: 3 })).toBe(0);
  });

  it('counts workers only waiting for their commit as free, up to the claim-ahead', () => {
    expect(claimSize(sizing, { waiting: 0, busy: 8, awaitingCommit: 3 })).toBe(3);
    expect(claimSize({ ...sizing, claimAhead: 2 }, { waiting: 0, busy: 8, awaitingCommit: 3 })).toBe(2);
    expect(claimSize({ ...sizing, claimAhead: 0 }, { waiting: 0, busy: 8, awaitingCommit: 3 })).toBe(0);
  });

  it('never claims more than one batch', () => {
    expect(claimSize({ ...sizing, concurrency: 100 }, idle)).toBe(32);
    expect(claimSize({ ...sizing, batchSize: 5 }, { waiting: 0, busy: 8, awaitingCommit: 8 })).toBe(5);
  });

  it('claims nothing while more is in hand than there are slots (a worker abandoned mid-send)', () => {
    expect(claimSize(sizing, { waiting: 2, busy: 9, awaitingCommit: 0 })).toBe(0);
  });

  it('stays within the batch and within the slots left, whatever is in hand (property)', () => {
    const count = fc.integer({ min: 0, max: 64 });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 }), count, count, count, count, (concurrency, batchSize, claimAhead, waiting, busy, awaitingCommit) => {
        const wanted = claimSize({ concurrency, batchSize, claimAhead }, { waiting, busy, awaitingCommit });
        expect(wanted).toBeGreaterThanOrEqual(0);
        expect(wanted).toBeLessThanOrEqual(batchSize);
        expect(waiting + busy + wanted).toBeLessThanOrEqual(Math.max(waiting + busy, concurrency + Math.min(claimAhead, awaitingCommit)));
      }),
    );
  });
});
