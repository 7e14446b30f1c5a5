// A copy of Prometheus alert rules with their durations shortened, so that an alert can be seen to
// fire and to resolve within a test (e2e/ops/alerts-fire.e2e.test.ts) or a rehearsal, rather than
// after the quarter of an hour a rule waits in production. Every `for:` and every range or
// subquery window in `expr` (`[10m]`, `[30m:1m]`) is divided by the factor, never below a floor that
// still holds a few scrapes; a group's `interval` too. Nothing else changes: value thresholds —
// `> 120000` ms of heartbeat age, `> 0.1` of RCPTs answered 451 — are the shipped ones, so a fault
// must still really last as long as they say. docs/runbook.md ("Time to detect") lists what the
// shortened copy changes and the figures measured with it.
//
//   node scripts/prometheus/shorten-rules.ts ops/prometheus/postern-alerts.yml 60 > /tmp/fast-rules.yml
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };
const DURATION = /^(?:\d+(?:ms|[smhdwy]))+$/;
const DURATION_PART = /(\d+)(ms|[smhdwy])/g;
/** A range `[5m]` or subquery `[30m:1m]` / `[30m:]` window in PromQL. */
const WINDOW = /\[((?:\d+(?:ms|[smhdwy]))+)(?::((?:\d+(?:ms|[smhdwy]))*))?\]/g;

export interface ShortenOptions {
  /** Durations are divided by this. */
  factor: number;
  /** No shortened duration goes below this (ms). */
  floorMs?: number;
}

export function durationMs(text: string): number {
  if (!DURATION.test(text)) throw new Error(`"${text}" is not a Prometheus duration`);
  let total = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) total += Number(amount) * (UNIT_MS[unit as string] as number);
  return total;
}

function formatMs(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000}s` : `${ms}ms`;
}

export function shortenDuration(text: string, options: ShortenOptions): string {
  return formatMs(Math.max(options.floorMs ?? 1_000, Math.round(durationMs(text) / options.factor)));
}

export function shortenExpr(expr: string, options: ShortenOptions): string {
  return expr.replace(WINDOW, (_, range: string, step: string | undefined) =>
    step === undefined ? `[${shortenDuration(range, options)}]` : `[${shortenDuration(range, options)}:${step ? shortenDuration(step, options) : ''}]`,
  );
}

interface RuleFile {
  groups: Array<{ interval?: string; rules: Array<{ for?: string; expr: string }> }>;
}

export function shortenRules(text: string, options: ShortenOptions): string {
  if (!(options.factor >= 1)) throw new Error(`the factor must be at least 1, not ${options.factor}`);
  const file = parse(text) as RuleFile;
  for (const group of file.groups) {
    if (group.interval) group.interval = shortenDuration(group.interval, options);
    for (const rule of group.rules) {
      if (rule.for) rule.for = shortenDuration(rule.for, options);
      rule.expr = shortenExpr(String(rule.expr), options);
    }
  }
  return `# Shortened by scripts/prometheus/shorten-rules.ts (factor ${options.factor}): not for production.\n${stringify(file, { lineWidth: 0 })}`;
}

if (import.meta.main) {
  const [file, factor] = process.argv.slice(2);
  if (!file || !factor || !(Number(factor) >= 1)) {
    process.stderr.write('usage: node scripts/prometheus/shorten-rules.ts <rules.yml> <factor ≥ 1>\n');
    process.exit(2);
  }
  process.stdout.write(shortenRules(readFileSync(file, 'utf8'), { factor: Number(factor) }));
}
