// What the core benches share around their runs: a deadline on every run (a stuck run stops the
// bench rather than hang it), the machine's load for the headers, and the engine host — one
// build's engine in a process of its own (engine-host.ts), answering one run at a time, so that
// builds compared (bench/compare/variants.ts) run in the same kind of process.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Variant } from '../compare/variants.ts';
import type { HostAnswer, HostRun } from './engine-host.ts';

/** A run that takes longer than this is stuck: the bench stops rather than wait forever. */
export const RUN_DEADLINE_MS = 10 * 60_000;

export function withinDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${RUN_DEADLINE_MS / 1000} s`)), RUN_DEADLINE_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${os.loadavg().map((n) => n.toFixed(2)).join(', ')}`;
  }
}

/** One build's engine host (engine-host.ts), answering one run at a time. */
export interface Host {
  variant: Variant;
  run<R extends HostRun>(run: R): Promise<Exclude<HostAnswer<R>, { error: string }>>;
  stop(): Promise<void>;
}

const HOST_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'engine-host.ts');

export async function startHost(variant: Variant): Promise<Host> {
  const child: ChildProcess = fork(HOST_SCRIPT, [], {
    env: { ...process.env, ...variant.env, BENCH_BUILD_ROOT: variant.root },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      const exited = (code: number | null) => reject(new Error(`the ${variant.name} engine host exited (${code})`));
      child.once('exit', exited);
      child.once('message', (message) => {
        child.off('exit', exited);
        resolve(message);
      });
    });
  const ready = (await withinDeadline(next(), `the ${variant.name} engine host's start`)) as { ready: string };
  console.log(`# ${variant.name}: ${variant.describe}, engine host pid ${child.pid}, ${ready.ready}`);
  return {
    variant,
    async run(run) {
      const answer = next();
      child.send(run);
      const result = (await withinDeadline(answer, `the ${variant.name} ${run.kind} run`)) as HostAnswer<typeof run>;
      if ('error' in result) throw new Error(`${variant.name}: ${result.error}`);
      return result as never;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.disconnect();
      await exited;
    },
  };
}
