// The builds a benchmark compares in one interleaved run: always this tree ("current"); with
// `--baseline <git-ref>` that ref's build (build-tree.ts) started exactly as the current one; with
// `--tracing on` the current build again with tracing on, exporting every span to a local sink that
// discards it (otlp-sink.ts). Each round runs every variant once, in this order, so the machine's
// load hits them alike; the figures are medians with their ranges and each variant's ratio to the
// reference (the baseline when there is one).
import { parseArgs } from 'node:util';
import { summarize } from '../mta/figures.ts';
import { type BuildTree, CURRENT_ROOT, exportBuildTree } from './build-tree.ts';
import { type OtlpSink, startOtlpSink, tracingEnv } from './otlp-sink.ts';

export interface Variant {
  name: string;
  /** The build's repository root. */
  root: string;
  /** Added to the process's environment. */
  env: Record<string, string>;
  /** Where its code comes from, for the header. */
  describe: string;
}

export interface Variants {
  list: Variant[];
  /** Whether anything beyond the current build was asked for. */
  comparing: boolean;
  /** What the traced variant exported, when there is one. */
  exported(): string | null;
  close(): Promise<void>;
}

export const CURRENT = 'current';
export const BASELINE = 'baseline';
export const TRACED = 'tracing on';

export async function variantsFromArgs(args: string[] = process.argv.slice(2)): Promise<Variants> {
  const { values } = parseArgs({ args, options: { baseline: { type: 'string' }, tracing: { type: 'string', default: 'off' } } });
  if (values.tracing !== 'on' && values.tracing !== 'off') throw new Error(`--tracing is on or off, not ${values.tracing}`);
  const list: Variant[] = [{ name: CURRENT, root: CURRENT_ROOT, env: {}, describe: 'this tree (tracing off)' }];
  let tree: BuildTree | null = null;
  let sink: OtlpSink | null = null;
  if (values.baseline) {
    tree = exportBuildTree(values.baseline);
    list.unshift({ name: BASELINE, root: tree.root, env: {}, describe: tree.label });
  }
  if (values.tracing === 'on') {
    sink = await startOtlpSink();
    list.push({ name: TRACED, root: CURRENT_ROOT, env: tracingEnv(sink), describe: `this tree, every span exported to ${sink.endpoint} (discarded)` });
  }
  return {
    list,
    comparing: list.length > 1,
    exported() {
      if (!sink) return null;
      const { requests, bytes } = sink.received();
      return `${TRACED}: ${requests} OTLP export requests, ${(bytes / 1024 / 1024).toFixed(1)} MiB of spans received and discarded`;
    },
    async close() {
      await sink?.stop();
      tree?.remove();
    },
  };
}

/** values[row][variant] = one figure per round. A Markdown table of each variant's median (range)
 *  and its ratio to the reference variant's median. */
export function comparisonTable(values: Map<string, Map<string, number[]>>, variants: Variant[], format: (value: number) => string): string {
  const reference = variants[0]?.name ?? CURRENT;
  const others = variants.slice(1).map((variant) => variant.name);
  const header = ['', ...variants.map((variant) => variant.name), ...others.map((name) => `${name} / ${reference}`)];
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`];
  for (const [row, byVariant] of values) {
    const summaries = variants.map((variant) => summarize(byVariant.get(variant.name) ?? []));
    const cells = summaries.map((summary) => (summary ? `${format(summary.median)} (${format(summary.min)}–${format(summary.max)})` : '—'));
    const base = summaries[0];
    const ratios = summaries.slice(1).map((summary) => (summary && base && base.median > 0 ? (summary.median / base.median).toFixed(3) : '—'));
    lines.push(`| ${[row, ...cells, ...ratios].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Appends one round's figures (one, or every sample of it) to values[row][variant]. */
export function record(values: Map<string, Map<string, number[]>>, row: string, variant: string, ...added: number[]): void {
  const byVariant = values.get(row) ?? new Map<string, number[]>();
  values.set(row, byVariant);
  byVariant.set(variant, [...(byVariant.get(variant) ?? []), ...added]);
}
