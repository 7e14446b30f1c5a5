// Time to detect, as Prometheus shows it: from the moment a fault is injected until the matching
// alert is listed `firing` by /api/v1/alerts, and from the recovery until it is no longer listed
// (resolved). Each wait has a deadline and says what it last saw. Every measurement is printed and
// collected into .test-results/alerts-time-to-detect.md with the machine's load at that moment.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../core/helpers/engine.ts';
import { waitFor } from '../../harness/index.ts';
import type { ActiveAlert, Prometheus } from './prometheus.ts';

export interface AlertMatch {
  alertname: string;
  /** Labels the alert must carry (a subset). */
  labels?: Record<string, string>;
}

export interface Detection {
  fault: string;
  alert: string;
  /** Fault injected → listed pending (the rule's expression became true). */
  pendingMs: number | null;
  /** Fault injected → listed firing. */
  detectMs: number;
  /** Recovery → no longer listed. */
  resolveMs: number | null;
  /** 1-minute load average when it fired, and the cores it is shared by. */
  load: string;
}

const detections: Detection[] = [];

export function describeMatch(match: AlertMatch): string {
  const labels = Object.entries(match.labels ?? {}).map(([name, value]) => `${name}="${value}"`);
  return labels.length ? `${match.alertname}{${labels.join(',')}}` : match.alertname;
}

function matching(alerts: ActiveAlert[], match: AlertMatch): ActiveAlert[] {
  return alerts.filter(
    (alert) =>
      alert.labels.alertname === match.alertname && Object.entries(match.labels ?? {}).every(([name, value]) => alert.labels[name] === value),
  );
}

function brief(alerts: ActiveAlert[]): string[] {
  return alerts.map((alert) => `${alert.labels.alertname}{instance=${alert.labels.instance ?? ''}} ${alert.state}`);
}

/** Waits until the alert is firing; records and prints the time since `faultAt`. */
export async function expectFiring(
  prometheus: Prometheus,
  fault: string,
  match: AlertMatch,
  faultAt: number,
  timeoutMs: number,
): Promise<Detection> {
  let pendingAt: number | null = null;
  const firing = await waitFor(
    `${describeMatch(match)} to fire (${fault})`,
    async () => {
      const alerts = await prometheus.alerts();
      const mine = matching(alerts, match);
      if (pendingAt === null && mine.length > 0) pendingAt = Date.now();
      return { firing: mine.find((alert) => alert.state === 'firing'), active: brief(alerts) };
    },
    (seen) => seen.firing !== undefined,
    { timeoutMs, intervalMs: 200 },
  );
  const firedAt = Date.now();
  const detection: Detection = {
    fault,
    alert: describeMatch(match),
    pendingMs: pendingAt === null ? null : (pendingAt as number) - faultAt,
    detectMs: firedAt - faultAt,
    resolveMs: null,
    load: `${os.loadavg()[0]?.toFixed(2)} on ${os.availableParallelism()} cores`,
  };
  detections.push(detection);
  console.log(
    `[time-to-detect] ${fault}: ${detection.alert} firing after ${(detection.detectMs / 1000).toFixed(1)} s ` +
      `(pending after ${detection.pendingMs === null ? '?' : (detection.pendingMs / 1000).toFixed(1)} s; load ${detection.load}): ${firing.firing?.annotations.summary ?? ''}`,
  );
  return detection;
}

/** Waits until the alert is no longer pending or firing; records the time since `recoveredAt`. */
export async function expectResolved(prometheus: Prometheus, detection: Detection, match: AlertMatch, recoveredAt: number, timeoutMs: number): Promise<void> {
  await expectQuiet(prometheus, match, timeoutMs, `${describeMatch(match)} to resolve (${detection.fault} over)`);
  detection.resolveMs = Date.now() - recoveredAt;
  console.log(`[time-to-detect] ${detection.fault}: ${detection.alert} resolved ${(detection.resolveMs / 1000).toFixed(1)} s after recovery`);
}

/** Waits until no alert matching is pending or firing (before a fault: nothing left over from the last one). */
export async function expectQuiet(prometheus: Prometheus, match: AlertMatch, timeoutMs: number, description?: string): Promise<void> {
  await waitFor(
    description ?? `${describeMatch(match)} not to be active`,
    async () => brief(matching(await prometheus.alerts(), match)),
    (active) => active.length === 0,
    { timeoutMs, intervalMs: 200 },
  );
}

function seconds(ms: number | null): string {
  return ms === null ? '—' : `${(ms / 1000).toFixed(1)} s`;
}

/** Prints the table of every measurement so far and writes it to .test-results/. */
export function reportDetections(overrides: string): string {
  const lines = [
    `Rules: ${overrides}`,
    '',
    '| fault | alert | pending after | firing after | resolved after recovery | load (1 min) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...detections.map(
      (d) => `| ${d.fault} | \`${d.alert}\` | ${seconds(d.pendingMs)} | ${seconds(d.detectMs)} | ${seconds(d.resolveMs)} | ${d.load} |`,
    ),
  ];
  const text = `${lines.join('\n')}\n`;
  const dir = path.join(repoRoot, '.test-results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'alerts-time-to-detect.md'), text);
  console.log(`[time-to-detect]\n${text}`);
  return text;
}
