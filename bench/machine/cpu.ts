// How busy the machine's CPUs were over a stretch of a benchmark, read from Linux's own counters:
// the edge bench prints the CPU pressure of every run, the engine bench both figures for every
// latency run. On a machine whose cores the servers, the clients and PostgreSQL share, a latency or
// a rate means little without knowing how much CPU was left.
import { readFileSync } from 'node:fs';

/** Microseconds so far in which at least one task of the machine was ready to run and waited for
 *  a CPU (Linux pressure stall information, /proc/pressure/cpu "some"); NaN where it is missing.
 *  Over a run, its share of the wall time says how far the shared cores were oversubscribed: every
 *  latency then includes waits for a CPU that no server code can remove. */
export function cpuPressureMicros(): number {
  try {
    const some = /^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return some ? Number(some[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** All CPUs' time so far (/proc/stat "cpu", in clock ticks): busy (user, nice, system, irq,
 *  softirq, steal) and all; null where it is missing. */
function cpuTicks(): { busy: number; all: number } | null {
  try {
    const line = /^cpu (.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1];
    if (!line) return null;
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, all: busy + idle + iowait };
  } catch {
    return null;
  }
}

/** From now until stop(): the share of all CPUs' time that was busy, and the share of the wall time
 *  in which some task waited for a CPU (cpuPressureMicros), as one line. */
export function watchMachineCpu(): { stop(): string } {
  const ticks = cpuTicks();
  const pressure = cpuPressureMicros();
  const t0 = performance.now();
  return {
    stop() {
      const seconds = (performance.now() - t0) / 1000;
      const after = cpuTicks();
      const busy = ticks && after && after.all > ticks.all ? `${Math.round((100 * (after.busy - ticks.busy)) / (after.all - ticks.all))} %` : '?';
      const waited = (cpuPressureMicros() - pressure) / 1e4 / seconds;
      return `machine CPUs busy ${busy}, some task waiting for a CPU ${Number.isNaN(waited) ? '?' : `${Math.round(waited)} %`} of the time`;
    },
  };
}
