// Tests wait for a state with a deadline; they never sleep and hope. When the deadline passes the
// error says what was awaited and what was last seen, which is usually the whole diagnosis.
import { setTimeout as delay } from 'node:timers/promises';
import { inspect } from 'node:util';

const PROBE_GRACE_MS = 5_000;

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Polls `probe` until `accept(value)` holds; resolves with that value. A probe that throws counts
 * as not yet (the error is what was last seen). A probe that never settles (a client stuck on a
 * dead connection) is not waited for past the deadline — or past PROBE_GRACE_MS after it started,
 * if that is later, so a slow last probe may still finish: the error then says so.
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
      const value = await withinDeadline(probe(), Math.max(deadline, Date.now() + PROBE_GRACE_MS));
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

/** `pending` until `deadline` (epoch ms), then a rejection saying that the probe did not answer in time. */
async function withinDeadline<T>(pending: Promise<T> | T, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the probe itself did not answer in time (still waiting on a connection?)')), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([pending, late]);
  } finally {
    clearTimeout(timer);
  }
}
