// Tests wait for a state with a deadline; they never sleep and hope. When the deadline passes the
// error says what was awaited and what was last seen, which is usually the whole diagnosis.
import { setTimeout as delay } from 'node:timers/promises';
import { inspect } from 'node:util';

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Polls `probe` until `accept(value)` holds; resolves with that value. A probe that throws counts
 * as not yet (the error is what was last seen).
 */
export async function waitFor<T>(
  description: string,
  probe: () => Promise<T> | T,
  accept: (value: T) => boolean = (value) => Boolean(value),
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastSeen: unknown = '(nothing yet)';
  for (;;) {
    try {
      const value = await probe();
      if (accept(value)) return value;
      lastSeen = value;
    } catch (error) {
      lastSeen = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${description}; last seen: ${inspect(lastSeen, { depth: 4, breakLength: 120 })}`,
      );
    }
    await delay(intervalMs);
  }
}
