import { describe, expect, it } from 'vitest';
import { DataMemoryBudget } from './memory-budget.ts';

describe('DataMemoryBudget: bytes of DATA held for messages in flight', () => {
  it('lets messages claim bytes up to the limit, refuses the claim that would pass it', () => {
    const seen: number[] = [];
    const budget = new DataMemoryBudget(100, (held) => seen.push(held));
    const first = budget.reserve();
    const second = budget.reserve();
    expect(first.tryGrow(60)).toBe(true);
    expect(second.tryGrow(30)).toBe(true);
    expect(second.tryGrow(11)).toBe(false);
    expect(budget.heldBytes).toBe(90);
    expect(budget.availableBytes).toBe(10);
    expect(second.tryGrow(10)).toBe(true);
    expect(seen).toEqual([60, 90, 100]);
  });

  it('gives back exactly what a message claimed, once, and nothing more can be claimed after', () => {
    const budget = new DataMemoryBudget(100);
    const first = budget.reserve();
    const second = budget.reserve();
    first.tryGrow(40);
    second.tryGrow(50);
    first.release();
    first.release();
    expect(budget.heldBytes).toBe(50);
    expect(first.tryGrow(1)).toBe(false);
    second.release();
    expect(budget.heldBytes).toBe(0);
    expect(budget.availableBytes).toBe(100);
  });
});
