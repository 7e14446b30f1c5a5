// One build's engine in a process of its own, for the core benches' comparison of builds
// (`--baseline`, `--tracing on`: bench/compare/variants.ts) and the stream intake bench. The bench
// starts one host per build (host-process.ts; BENCH_BUILD_ROOT: that build's tree, OTEL_* when it
// traces) and, for every round, prepares the work and asks the host for one run: the host starts
// the engine as the in-process bench does (engine-adapter.ts), times it with this process's CPU,
// stops it and answers. A drain run (run.ts) is timed from the first hand-over to the last
// committed outcome of `count` queued deliveries; an intake run (stream-intake.ts) from the
// engine's start (its stream consumer about to make its first read) to the `count`-th stream
// command accepted, its sends held (engine-adapter.ts, holdSends). Every build runs in the same
// kind of process, so the comparison is like for like. Tracing, when asked for, starts first, as in the engine's main.ts:
// pg must load after it.
import { FirstJobClock } from './figures.ts';

type Options = Omit<import('./engine-adapter.ts').BenchEngineOptions, 'onHandOver' | 'onAccepted' | 'holdSends' | 'templateDir'>;

export type HostRun =
  | { kind: 'drain'; options: Options; count: number }
  /** times: answer when each command was accepted (the latency run). */
  | { kind: 'intake'; options: Options & { redisAddr: string }; count: number; times: boolean };

export interface DrainAnswer {
  perSecond: number;
  seconds: number;
  cpuUsPerJob: number;
  detail: string;
}

export interface IntakeAnswer extends DrainAnswer {
  /** process.hrtime.bigint() (as text) of each command's acceptance, in order, when asked. */
  acceptedAt: string[];
  /** Messages handed to the relay: 1, the held one, when nothing else was sent. */
  sends: number;
}

export type HostAnswer<R extends HostRun = HostRun> = (R extends { kind: 'intake' } ? IntakeAnswer : DrainAnswer) | { error: string };

const root = process.env.BENCH_BUILD_ROOT;
if (!root || !process.send) throw new Error('engine-host.ts is started by bench/core/run.ts (BENCH_BUILD_ROOT, an IPC channel)');
const send = process.send.bind(process);

const path = await import('node:path');
const { pathToFileURL } = await import('node:url');
const tracingModule = path.join(root, 'packages/shared/src/process/start-tracing.ts');
const { existsSync } = await import('node:fs');
const tracing = existsSync(tracingModule)
  ? await (await import(pathToFileURL(tracingModule).href)).startTracing('core')
  : { enabled: false, shutdown: async () => {} };
const { engineDetail, loadEngineTree, startBenchEngine } = await import('./engine-adapter.ts');
const tree = await loadEngineTree(root);

async function drain(run: Extract<HostRun, { kind: 'drain' }>): Promise<DrainAnswer> {
  const clock = new FirstJobClock();
  const engine = await startBenchEngine(tree, { ...run.options, templateDir: path.join(root as string, 'templates'), onHandOver: () => clock.mark() });
  await engine.committed(run.count);
  const timed = clock.stop(run.count);
  await engine.stop();
  return { ...timed, detail: engineDetail(engine) };
}

async function intake(run: Extract<HostRun, { kind: 'intake' }>): Promise<IntakeAnswer> {
  const accepted: bigint[] = [];
  let done = () => {};
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  const engine = await startBenchEngine(tree, {
    ...run.options,
    templateDir: path.join(root as string, 'templates'),
    holdSends: true,
    onAccepted: (at) => {
      if (accepted.push(at) === run.count) done();
    },
  });
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  await all;
  const cpu = process.cpuUsage(cpu0);
  const seconds = Number((accepted[run.count - 1] as bigint) - t0) / 1e9;
  const sends = engine.sends();
  await engine.stop();
  return {
    seconds,
    perSecond: run.count / seconds,
    cpuUsPerJob: (cpu.user + cpu.system) / run.count,
    detail: `${sends} message(s) handed to the relay`,
    acceptedAt: run.times ? accepted.map(String) : [],
    sends,
  };
}

process.on('message', (run: HostRun) => {
  (run.kind === 'intake' ? intake(run) : drain(run)).then(send, (error: unknown) => send({ error: String((error as Error)?.stack ?? error) }));
});
// The bench closing the channel is the end of this host.
process.once('disconnect', () => {
  void tracing.shutdown().finally(() => process.exit(0));
});
send({ ready: tracing.enabled ? 'tracing on' : 'tracing off' });
