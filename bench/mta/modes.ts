// The load the edge benchmark puts on each server, the same clients for every server: Postfix's
// smtp-source in three modes (2 KiB messages, one recipient each, aliases every server knows), the C
// reject client (RCPT to an unknown address, 550), and the project's Node load client as an extra
// figure (kept-open sessions, random aliases, RCPT latency). During the -s 20 run a probe session
// (rcpt-probe.ts, a process of its own) times RCPTs: the RCPT latency at that load. Each run answers how many messages
// (or refusals) in how many seconds, and what went wrong if anything did.
import { spawn } from 'node:child_process';
import { ALIAS_COUNT, NUMBERED_RECIPIENT, randomRecipient, UNKNOWN_RECIPIENT } from './aliases.ts';
import { runLoad } from './load-client.ts';
import { startRcptProbe } from './rcpt-probe.ts';
import type { BenchServer } from './servers/server.ts';
import type { BenchTools } from './tools.ts';

export interface Measured {
  /** Messages answered 250 (reject path: RCPTs answered 550). */
  count: number;
  seconds: number;
  /** Set when the client saw anything but the expected replies. */
  problem: string | null;
  /** Every RCPT timed in the run: the round's percentiles and those over all rounds come from it. */
  rcptMs?: number[];
}

export interface Mode {
  id: string;
  label: string;
  /** Reject path: counts refusals, only for servers that refuse unknown recipients. */
  rejects: boolean;
  run(server: BenchServer, tools: BenchTools, scale: number): Promise<Measured>;
}

const SESSIONS = 20;

function collect(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (data: string) => {
      stdout += data;
    });
    child.stderr.setEncoding('utf8').on('data', (data: string) => {
      stderr += data;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - started) / 1000 }));
  });
}

/** smtp-source sends every message or stops at the first reply that is not positive (exit 1). */
async function smtpSource(tools: BenchTools, server: BenchServer, options: { sessions: number; reuse: boolean; messages: number }): Promise<Measured> {
  if (options.messages > ALIAS_COUNT) throw new Error(`${options.messages} messages need as many aliases: raise BENCH_ALIASES or lower BENCH_SCALE`);
  const args = [
    ...(options.reuse ? ['-d'] : []),
    ['-s', String(options.sessions)],
    ['-m', String(options.messages)],
    ['-l', '2048'],
    ['-M', 'bench.client.test'],
    ['-f', 'bench@client.test'],
    // Message n to <n>user@bench.test: a recipient and bytes of its own (aliases.ts).
    '-N',
    ['-t', NUMBERED_RECIPIENT],
  ].flat();
  const result = await collect(tools.smtpSource, [...args, `127.0.0.1:${server.port}`]);
  const problem = result.code === 0 ? null : `smtp-source exited ${result.code}: ${result.stderr.trim().split('\n').at(-1)}`;
  return { count: result.code === 0 ? options.messages : 0, seconds: result.seconds, problem };
}

export const MODES: Mode[] = [
  {
    id: 'new',
    label: '-s 20, new connection per message',
    rejects: false,
    async run(server, tools, scale) {
      // The RCPT latency goal is set at this load: a probe session measures it meanwhile.
      const probe = startRcptProbe(server.port);
      const result = await smtpSource(tools, server, { sessions: SESSIONS, reuse: false, messages: Math.round(4000 * scale) });
      const rcpt = await probe.stop();
      const probeProblem = rcpt.problem ?? (rcpt.timesMs.length === 0 ? 'the RCPT probe took no sample' : null);
      return {
        ...result,
        problem: result.problem ?? (probeProblem ? `RCPT probe: ${probeProblem}` : null),
        rcptMs: rcpt.timesMs,
      };
    },
  },
  {
    id: 'reuse',
    label: '-d -s 20, connections reused',
    rejects: false,
    run: (server, tools, scale) => smtpSource(tools, server, { sessions: SESSIONS, reuse: true, messages: Math.round(10_000 * scale) }),
  },
  {
    id: 'serial',
    label: '-s 1, one session at a time',
    rejects: false,
    run: (server, tools, scale) => smtpSource(tools, server, { sessions: 1, reuse: false, messages: Math.round(1500 * scale) }),
  },
  {
    id: 'reject',
    label: 'reject path, 20 sessions (RCPT -> 550)',
    rejects: true,
    async run(server, tools, scale) {
      const count = Math.round(10_000 * scale);
      if (!server.refusal) throw new Error(`${server.name} has no reject path`);
      const { port, code } = server.refusal;
      const result = await collect(tools.rejectClient, ['127.0.0.1', String(port), String(SESSIONS), String(count), UNKNOWN_RECIPIENT, String(code)]);
      const figures = Object.fromEntries([...result.stdout.matchAll(/(\w+)=([\d.]+)/g)].map((match) => [match[1], Number(match[2])]));
      const rejected = figures.rejected ?? 0;
      const wrong = count - rejected;
      const problem =
        result.code !== 0 || wrong > 0
          ? `reject client: ${figures.other ?? '?'} other replies, ${figures.errors ?? '?'} broken connections ${result.stderr.trim()}`
          : null;
      return { count: rejected, seconds: result.seconds, problem };
    },
  },
  {
    id: 'node',
    label: '(extra) Node client, 20 kept-open sessions',
    rejects: false,
    async run(server, _tools, scale) {
      const result = await runLoad({ port: server.port, sessions: SESSIONS, seconds: Math.max(2, 8 * scale), recipient: randomRecipient });
      return {
        count: result.accepted,
        seconds: result.seconds,
        problem: result.refused > 0 ? `${result.refused} refused` : null,
        rcptMs: result.rcptMs,
      };
    },
  },
];

/** A short round on a fresh server, so JIT, connection pools and process pools are warm before
 *  anything counts. Returns the messages it had accepted. */
export async function warmUp(server: BenchServer, tools: BenchTools): Promise<number> {
  let accepted = 0;
  for (const reuse of [false, true]) {
    const result = await smtpSource(tools, server, { sessions: SESSIONS, reuse, messages: reuse ? 1000 : 400 });
    if (result.problem) throw new Error(`${server.name} warm-up: ${result.problem}`);
    accepted += result.count;
  }
  return accepted;
}
