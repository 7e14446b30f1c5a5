// Benchmark of the SMTP edge against Postfix and Haraka on the same machine (not a test: it prints
// figures and asserts nothing). Every server is driven by the same standard clients — Postfix's
// smtp-source (2 KiB messages, one recipient) and a small C reject client — in interleaved rounds
// (for each mode: Postern, Postfix, Haraka, smtp-server alone, smtp-sink, then again), and each
// figure is the median of the rounds with its range, with Postern's ratio to the others. Absolute
// numbers depend on what else the machine does (the load average is printed with every round); the
// ratios are the result. "smtp-server" is the edge's protocol library alone, in memory, storing
// nothing (servers/smtp-server-alone.ts): the floor any edge built on it starts from.
//
//   node bench/mta/run.ts
//   BENCH_ROUNDS=3 BENCH_SCALE=1 BENCH_ALIASES=100000
//   BENCH_SERVERS=postern,postfix,haraka,smtp-server,smtp-sink BENCH_MODES=new,reuse,serial,reject,node
//
// Servers: servers/*.ts (what each one does with a message is written there). What it installs when
// missing (apt: postfix, gcc; npm: Haraka into a cache directory): tools.ts. It needs root for
// Postfix's master, and the machine's PostgreSQL for Postern (servers/postern.ts). BENCH_SCALE
// multiplies every message count (0.1 for a quick look). docs/performance.md has the goals
// and how to profile the edge under this load, docs/performance-runs.md every run's figures.
//
//   node bench/mta/run.ts --baseline <git-ref> [--tracing on]
// compares builds of Postern instead (bench/compare/variants.ts): the ref's edge ("baseline"), this
// tree's ("current") and, with --tracing on, this tree's exporting every span ("tracing on"), each
// started as below, interleaved in every round; it prints each one's median rate and CPU per
// message with their ranges and ratios. With either option BENCH_SERVERS defaults to postern alone.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { roundOrder } from '../compare/round-order.ts';
import { comparisonTable, record, type Variants, variantsFromArgs } from '../compare/variants.ts';
import { cpuPressureMicros } from '../machine/cpu.ts';
import { formatRate, rateTable, spreadTable, summarize } from './figures.ts';
import { percentile } from './load-client.ts';
import { type Measured, MODES, warmUp } from './modes.ts';
import { startHaraka } from './servers/haraka.ts';
import { startPostern } from './servers/postern.ts';
import { startPostfix } from './servers/postfix.ts';
import { type BenchServer, cpuSeconds, peakRssMiB } from './servers/server.ts';
import { startSmtpServerAlone } from './servers/smtp-server-alone.ts';
import { startSmtpSink } from './servers/smtp-sink.ts';
import { type BenchTools, ensureTools, HARAKA_VERSION } from './tools.ts';

const variants: Variants = await variantsFromArgs();
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const scale = Number(process.env.BENCH_SCALE ?? 1);
const serverNames = (process.env.BENCH_SERVERS ?? (variants.comparing ? 'postern' : 'postern,postfix,haraka,smtp-server,smtp-sink')).split(',');
const modeIds = (process.env.BENCH_MODES ?? MODES.map((mode) => mode.id).join(',')).split(',');
const modes = MODES.filter((mode) => modeIds.includes(mode.id));

const starters: Record<string, (tools: BenchTools) => Promise<BenchServer[]>> = {
  postern: async () => {
    if (!variants.comparing) return [await startPostern()];
    const started: BenchServer[] = [];
    for (const variant of variants.list) started.push(await startPostern({ name: variant.name, root: variant.root, env: variant.env }));
    return started;
  },
  postfix: async (tools) => [await startPostfix(tools)],
  haraka: async (tools) => [await startHaraka(tools)],
  'smtp-server': async () => [await startSmtpServerAlone()],
  'smtp-sink': async (tools) => [await startSmtpSink(tools)],
};

function load(): string {
  return os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

const servers: BenchServer[] = [];
let stopping: Promise<void> | null = null;
function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const server of servers.splice(0).reverse()) {
      await server.stop().catch((error: unknown) => console.error(`stopping ${server.name}: ${String(error)}`));
    }
    await variants.close();
  })();
  return stopping;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopAll().finally(() => process.exit(130)));
}

function describe(server: BenchServer, result: Measured): string {
  const rate = `${formatRate(result.count / result.seconds).padStart(7)}/s (${result.count} in ${result.seconds.toFixed(1)} s)`;
  const rcpt = result.rcptMs === undefined ? '' : `  RCPT p50 ${percentile(result.rcptMs, 50).toFixed(2)} ms p99 ${percentile(result.rcptMs, 99).toFixed(2)} ms`;
  return `${server.name.padEnd(10)} ${rate}${rcpt}${result.problem ? `  PROBLEM: ${result.problem}` : ''}`;
}

async function main(): Promise<void> {
  const unknown = serverNames.filter((name) => !(name in starters));
  if (unknown.length > 0) throw new Error(`unknown BENCH_SERVERS: ${unknown.join(', ')} (known: ${Object.keys(starters).join(', ')})`);
  // A misspelt mode would otherwise leave its row out silently: a run that measured nothing.
  const unknownModes = modeIds.filter((id) => !MODES.some((mode) => mode.id === id));
  if (unknownModes.length > 0) throw new Error(`unknown BENCH_MODES: ${unknownModes.join(', ')} (known: ${MODES.map((mode) => mode.id).join(', ')})`);
  const tools = ensureTools();
  const cpu = os.cpus();
  console.log(`${new Date().toISOString()}  ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, load average ${load()}`);
  console.log(
    `Node ${process.version}, Postfix ${execFileSync(tools.postconf, ['-d', '-h', 'mail_version'], { encoding: 'utf8' }).trim()}, Haraka ${HARAKA_VERSION}; ${rounds} rounds, scale ${scale}`,
  );
  if (variants.comparing) for (const variant of variants.list) console.log(`${variant.name}: ${variant.describe}`);
  for (const name of serverNames) servers.push(...(await (starters[name] as (tools: BenchTools) => Promise<BenchServer[]>)(tools)));
  const answered = new Map<string, number>();
  for (const server of servers) {
    answered.set(server.name, await warmUp(server, tools));
    await server.settle?.();
  }

  const rates = new Map<string, Map<string, number[]>>();
  const cpuMs = new Map<string, Map<string, number[]>>();
  const rcptP99 = new Map<string, Map<string, number[]>>();
  // Every RCPT of every round, per mode and server: one round's probe takes about a hundred samples,
  // so its p99 is nearly its maximum; over all rounds the p99 means more.
  const rcptPooled = new Map<string, Map<string, number[]>>();
  const pressure = new Map<string, Map<string, number[]>>();
  const problems: string[] = [];
  for (const mode of modes) {
    console.log(`\n${mode.label}`);
    const byServer = new Map<string, number[]>();
    const cpuByServer = new Map<string, number[]>();
    rates.set(mode.label, byServer);
    cpuMs.set(mode.label, cpuByServer);
    for (let round = 1; round <= rounds; round++) {
      console.log(`  round ${round}, load average ${load()}`);
      for (const server of roundOrder(servers, round)) {
        if (mode.rejects && !server.refusal) continue;
        const pid = mode.rejects ? (server.refusal?.pid ?? server.pid) : server.pid;
        const cpuBefore = pid === undefined ? Number.NaN : cpuSeconds(pid);
        const pressureBefore = cpuPressureMicros();
        const result = await mode.run(server, tools, scale);
        const cpuAfter = pid === undefined ? Number.NaN : cpuSeconds(pid);
        const pressureShare = (cpuPressureMicros() - pressureBefore) / 1e4 / result.seconds;
        const settleStart = performance.now();
        await server.settle?.();
        const settledMs = performance.now() - settleStart;
        console.log(`    ${describe(server, result)}${settledMs >= 100 ? `  (its queue emptied ${(settledMs / 1000).toFixed(1)} s after the round)` : ''}`);
        if (result.problem) problems.push(`${mode.label}, round ${round}, ${server.name}: ${result.problem}`);
        if (!mode.rejects) answered.set(server.name, (answered.get(server.name) ?? 0) + result.count);
        // A round with a problem is reported and left out of the figures.
        const rate = result.problem ? Number.NaN : result.count / result.seconds;
        byServer.set(server.name, [...(byServer.get(server.name) ?? []), rate]);
        cpuByServer.set(server.name, [...(cpuByServer.get(server.name) ?? []), ((cpuAfter - cpuBefore) * 1000) / result.count]);
        if (result.rcptMs && !result.problem) {
          record(rcptP99, mode.label, server.name, percentile(result.rcptMs, 99));
          record(rcptPooled, mode.label, server.name, ...result.rcptMs);
        }
        if (!result.problem && Number.isFinite(pressureShare)) record(pressure, mode.label, server.name, pressureShare);
      }
    }
  }

  const names = servers.map((server) => server.name);
  console.log(`\nmessages/s (reject path: refused RCPTs/s), median of ${rounds} (range); load average now ${load()}\n`);
  console.log(rateTable(rates, names));
  console.log(
    '\nCPU per message in ms, median (range) — the server\'s process and its children (Postern: the primary and its workers); not for Postfix (many processes under its master):\n',
  );
  const cpuNames = servers.filter((server) => server.pid !== undefined).map((server) => server.name);
  const cpuLines = [`| mode | ${cpuNames.join(' | ')} |`, `| --- | ${cpuNames.map(() => '---').join(' | ')} |`];
  for (const [mode, byServer] of cpuMs) {
    const cells = cpuNames.map((name) => {
      const summary = summarize(byServer.get(name) ?? []);
      return summary ? `${summary.median.toFixed(2)} (${summary.min.toFixed(2)}–${summary.max.toFixed(2)})` : '—';
    });
    cpuLines.push(`| ${mode} | ${cells.join(' | ')} |`);
  }
  console.log(cpuLines.join('\n'));
  if (rcptP99.size > 0) {
    console.log('\nRCPT latency p99 in ms, median (range) over the rounds: a probe session during -s 20 (rcpt-probe.ts), the Node client\'s own sessions in its row:\n');
    console.log(spreadTable(rcptP99, names));
    console.log('\nRCPT latency in ms over the samples of all rounds together: p50 / p99 (samples):\n');
    const pooledLines = [`| mode | ${names.join(' | ')} |`, `| --- | ${names.map(() => '---').join(' | ')} |`];
    for (const [mode, byServer] of rcptPooled) {
      const cells = names.map((name) => {
        const times = byServer.get(name) ?? [];
        return times.length === 0 ? '—' : `${percentile(times, 50).toFixed(2)} / ${percentile(times, 99).toFixed(2)} (${times.length})`;
      });
      pooledLines.push(`| ${mode} | ${cells.join(' | ')} |`);
    }
    console.log(pooledLines.join('\n'));
  }
  if (pressure.size > 0) {
    console.log(
      '\nCPU pressure in %, median (range): the share of each run\'s wall time in which some task of the machine waited for a CPU (/proc/pressure/cpu); where it is high, every latency above includes waits for a core:\n',
    );
    console.log(spreadTable(pressure, names));
  }
  for (const server of servers) {
    if (!server.stored) continue;
    // A byte-identical message to the same recipient is answered with the first one's queue id (a
    // sender's retry, not stored twice); the clients send none (aliases.ts), so none is expected.
    const { stored, duplicates, acceptBatchMean } = await server.stored();
    const consistent = stored + duplicates === answered.get(server.name);
    console.log(
      `\n${server.name}: answered 250 ${answered.get(server.name)} times: ${stored} messages stored + ${duplicates} byte-identical repeats answered as duplicates${consistent ? '' : ' (MISMATCH)'}; edge peak RSS ${peakRssMiB(server.pid ?? 0).toFixed(0)} MiB (its processes' peaks summed)${acceptBatchMean === undefined ? '' : `; ${acceptBatchMean.toFixed(2)} messages per accept statement on average`}`,
    );
  }
  if (variants.comparing) {
    const variantRates = new Map<string, Map<string, number[]>>();
    const variantCpu = new Map<string, Map<string, number[]>>();
    for (const [mode, byServer] of rates) for (const variant of variants.list) for (const value of byServer.get(variant.name) ?? []) record(variantRates, mode, variant.name, value);
    for (const [mode, byServer] of cpuMs) for (const variant of variants.list) for (const value of byServer.get(variant.name) ?? []) record(variantCpu, mode, variant.name, value);
    console.log(`\nbuilds compared, ${rounds} interleaved rounds: messages/s, median (range), and the ratio to ${variants.list[0]?.name}:\n`);
    console.log(comparisonTable(variantRates, variants.list, formatRate));
    console.log(`\nCPU of the edge process per message in ms, median (range), and the ratio to ${variants.list[0]?.name}:\n`);
    console.log(comparisonTable(variantCpu, variants.list, (value) => value.toFixed(3)));
    const exported = variants.exported();
    if (exported) console.log(`\n${exported}`);
  }
  if (problems.length > 0) console.log(`\nPROBLEMS (these rounds are not valid figures):\n${problems.join('\n')}`);
}

try {
  await main();
} finally {
  await stopAll();
}
