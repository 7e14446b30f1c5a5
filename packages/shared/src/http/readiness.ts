// Readiness as metrics as well as an answer. /readyz tells whoever asks; an alert needs a series
// Prometheus scrapes, and a process answering /readyz 503 still serves /metrics, so `up` never says
// "not ready". Every evaluation — each /readyz request's, and a timer's, so that a process nobody
// polls still reports — sets mail_process_ready (1 ready, 0 not) and mail_readiness_check_ok{check}.
// A scrape only reads what the last evaluation found: each check is cut off after the check timeout,
// so a dependency that hangs delays an evaluation by that much and never a scrape (the same reason
// the engine samples its queue figures in the background, packages/shared/src/metrics/schedule-sampler.ts).
import type { Logger } from 'pino';
import { prometheus, type Registry } from '../metrics/registry.ts';

/** A readiness check resolves when healthy and throws (with a reason) when not. */
export type ReadinessCheck = () => Promise<void>;

export interface ReadinessReport {
  ready: boolean;
  /** Each check's name: 'ok', or why it failed. */
  checks: Record<string, string>;
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([check(), timeout]);
    return 'ok';
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    clearTimeout(timer);
  }
}

export async function evaluateReadiness(checks: Record<string, ReadinessCheck>, timeoutMs: number): Promise<ReadinessReport> {
  const names = Object.keys(checks);
  const results = await Promise.all(names.map((name) => runCheck(checks[name] as ReadinessCheck, timeoutMs)));
  const report: Record<string, string> = {};
  names.forEach((name, index) => {
    report[name] = results[index] as string;
  });
  return { ready: results.every((result) => result === 'ok'), checks: report };
}

export interface ReadinessMonitorOptions {
  checks: Record<string, ReadinessCheck>;
  registry: Registry;
  logger: Logger;
  checkTimeoutMs: number;
  /** How often the timer evaluates. */
  intervalMs: number;
}

export interface ReadinessMonitor {
  /** Runs every check now (as /readyz does), records the result in the gauges and returns it. */
  evaluate(): Promise<ReadinessReport>;
  stop(): void;
}

export function startReadinessMonitor(options: ReadinessMonitorOptions): ReadinessMonitor {
  // Until the first evaluation ends the process has not shown it is ready: mail_process_ready is 0
  // (an unlabelled gauge starts there), the per-check series do not exist yet.
  const ready = new prometheus.Gauge({
    name: 'mail_process_ready',
    help: 'Whether every readiness check passed at the last evaluation (1) or not (0); /readyz answers 200 exactly when it is 1.',
    registers: [options.registry],
  });
  const checkOk = new prometheus.Gauge({
    name: 'mail_readiness_check_ok',
    help: 'Whether each readiness check passed at the last evaluation (1) or not (0); /readyz names the reason.',
    labelNames: ['check'],
    registers: [options.registry],
  });
  // A /readyz evaluation and the timer's may overlap; the one started last is the one that counts.
  let started = 0;
  let recorded = 0;
  let wasReady: boolean | null = null;
  let stopped = false;

  const evaluate = async () => {
    const sequence = ++started;
    const report = await evaluateReadiness(options.checks, options.checkTimeoutMs);
    if (sequence > recorded && !stopped) {
      recorded = sequence;
      ready.set(report.ready ? 1 : 0);
      for (const [check, result] of Object.entries(report.checks)) checkOk.set({ check }, result === 'ok' ? 1 : 0);
      if (wasReady !== null && wasReady !== report.ready) {
        if (report.ready) options.logger.info({ checks: report.checks }, 'ready');
        else options.logger.warn({ checks: report.checks }, 'not ready');
      }
      wasReady = report.ready;
    }
    return report;
  };
  // The next timer evaluation is due an interval after the last one ended: never two at once, so
  // with a check hanging each waits out its timeout and no pile of them builds up.
  let timer: NodeJS.Timeout | undefined;
  const onTimer = async () => {
    await evaluate();
    if (stopped) return;
    timer = setTimeout(onTimer, options.intervalMs);
    timer.unref();
  };
  void onTimer();
  return {
    evaluate,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
