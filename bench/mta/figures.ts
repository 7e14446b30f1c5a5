// How the edge benchmark reports: per mode and server the median rate of the rounds with its range,
// and Postern's ratio to each other server, as a Markdown table that can go into
// docs/performance-runs.md as printed.

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function summarize(values: number[]): Summary | null {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted.at(-1) as number };
}

export function formatRate(rate: number): string {
  if (!Number.isFinite(rate)) return '—';
  return rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toFixed(1);
}

function cell(summary: Summary | null): string {
  return summary ? `${formatRate(summary.median)} (${formatRate(summary.min)}–${formatRate(summary.max)})` : '—';
}

/** rates[mode label][server name] = the rate of each round. */
export function rateTable(rates: Map<string, Map<string, number[]>>, servers: string[], reference = 'postern'): string {
  const others = servers.filter((name) => name !== reference && name !== 'smtp-sink');
  const header = ['mode', ...servers, ...(servers.includes(reference) ? others.map((name) => `${reference} / ${name}`) : [])];
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`];
  for (const [mode, byServer] of rates) {
    const summaries = new Map(servers.map((name) => [name, summarize(byServer.get(name) ?? [])]));
    const ours = summaries.get(reference);
    const ratios = servers.includes(reference)
      ? others.map((name) => {
          const theirs = summaries.get(name);
          return ours && theirs && theirs.median > 0 ? (ours.median / theirs.median).toFixed(2) : '—';
        })
      : [];
    lines.push(`| ${[mode, ...servers.map((name) => cell(summaries.get(name) ?? null)), ...ratios].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** values[mode label][server name] = a figure per round (a latency in ms, a share in %): median
 *  (range) per server. */
export function spreadTable(values: Map<string, Map<string, number[]>>, servers: string[]): string {
  const cell = (summary: Summary | null) => (summary ? `${summary.median.toFixed(2)} (${summary.min.toFixed(2)}–${summary.max.toFixed(2)})` : '—');
  const lines = [`| mode | ${servers.join(' | ')} |`, `| --- | ${servers.map(() => '---').join(' | ')} |`];
  for (const [mode, byServer] of values) lines.push(`| ${mode} | ${servers.map((name) => cell(summarize(byServer.get(name) ?? []))).join(' | ')} |`);
  return lines.join('\n');
}
