// The fixed retry ladder (no-health-endpoints: "dead letters appear only after the fixed retry ladder is
// exhausted"), written with cumulative times like ZoneMTA's DEFAULT_DEFER_TIMES. RFC 5321 4.5.4.1:
// retry no sooner than every 30 minutes once the first quick retries are spent, and give up no
// sooner than 4-5 days; the ladder ends after about 4 days 4 hours.
//
//   failed attempt   wait before the next   cumulative since the first attempt
//        1                  1m                        1m
//        2                  5m                        6m
//        3                 15m                       21m
//        4                 30m                       51m
//        5                  1h                     1h51m
//        6                  2h                     3h51m
//        7                  4h                     7h51m
//        8                  8h                    15h51m
//        9                 12h                    27h51m
//       10                 24h                    51h51m
//       11                 24h                    75h51m
//       12                 24h                    99h51m  (4 days 3h51m)
//       13           dead letter (13 attempts in all)
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const DEFAULT_RETRY_LADDER_MS: readonly number[] = [
  1 * MINUTE,
  5 * MINUTE,
  15 * MINUTE,
  30 * MINUTE,
  1 * HOUR,
  2 * HOUR,
  4 * HOUR,
  8 * HOUR,
  12 * HOUR,
  24 * HOUR,
  24 * HOUR,
  24 * HOUR,
];

export interface RetryLadder {
  readonly waitsMs: readonly number[];
  /** Attempts in all before a delivery is dead-lettered: one more than the waits. */
  readonly maxAttempts: number;
}

export function retryLadder(override: readonly number[] | null): RetryLadder {
  const waitsMs = override && override.length > 0 ? override : DEFAULT_RETRY_LADDER_MS;
  return { waitsMs, maxAttempts: waitsMs.length + 1 };
}

/** After attempt `attemptNumber` (1-based) failed temporarily: wait this long, or dead-letter. */
export function nextStep(ladder: RetryLadder, attemptNumber: number): { action: 'retry'; waitMs: number } | { action: 'dead_letter' } {
  const waitMs = ladder.waitsMs[attemptNumber - 1];
  return waitMs === undefined ? { action: 'dead_letter' } : { action: 'retry', waitMs };
}
