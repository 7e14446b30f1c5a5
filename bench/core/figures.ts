// Arithmetic of the core bench's figures: percentiles of raw samples (not histogram bounds),
// medians with their ranges, the way rates are printed, and the garbage collector's pauses.
import { PerformanceObserver } from 'node:perf_hooks';

/** Nearest-rank percentile of raw samples; NaN when there are none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spreadOf(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), min: sorted[0] ?? Number.NaN, max: sorted.at(-1) ?? Number.NaN };
}

export function rate(perSecond: number): string {
  return Math.round(perSecond).toLocaleString('en-US');
}

export function ms(value: number): string {
  return value.toFixed(value < 10 ? 2 : 1);
}

export interface Timed {
  seconds: number;
  perSecond: number;
  /** CPU time of this process (user + system) per job, in microseconds. */
  cpuUsPerJob: number;
}

/** Wall and CPU time of this process from the first job's start (mark(), called on every start)
 *  to stop(): startup does not count, as graphile-worker's perfTest takes its startup time off. */
export class FirstJobClock {
  private wall: bigint | null = null;
  private cpu: NodeJS.CpuUsage | null = null;

  mark(): void {
    if (this.wall !== null) return;
    this.wall = process.hrtime.bigint();
    this.cpu = process.cpuUsage();
  }

  stop(jobs: number): Timed {
    if (this.wall === null || this.cpu === null) throw new Error('no job was started');
    const seconds = Number(process.hrtime.bigint() - this.wall) / 1e9;
    const cpu = process.cpuUsage(this.cpu);
    return { seconds, perSecond: jobs / seconds, cpuUsPerJob: (cpu.user + cpu.system) / jobs };
  }
}

/** The garbage collector's pauses in this process (where the latency run's engine runs) from now
 *  until stop(), as one line: a pause holds every delivery back, and the backlog it leaves takes
 *  about as long again to clear at half the engine's rate, so the latency's tail follows it. */
export function watchGcPauses(): { stop(): string } {
  const pauses: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push(entry.duration);
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    stop() {
      observer.disconnect();
      pauses.sort((a, b) => a - b);
      const total = pauses.reduce((sum, pause) => sum + pause, 0);
      return `GC in this process: ${pauses.length} pauses, ${ms(total)} ms in all, p99 ${ms(percentile(pauses, 99))} ms, longest ${ms(pauses.at(-1) ?? 0)} ms`;
    },
  };
}
