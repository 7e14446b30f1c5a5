// One build's engine in a process of its own, for the core bench's comparison of builds
// (`--baseline`, `--tracing on`: bench/compare/variants.ts). The bench starts one host per build
// (BENCH_BUILD_ROOT: that build's tree, OTEL_* when it traces) and, for every round, queues the
// deliveries and asks the host to drain them: the host starts the engine as the in-process bench
// does (engine-adapter.ts), times it from its first hand-over to its last committed outcome with
// this process's CPU, stops it and answers. Every build runs in the same kind of process, so the
// comparison is like for like. Tracing, when asked for, starts first, as in the engine's main.ts:
// pg must load after it.
import { FirstJobClock } from './figures.ts';

export interface HostRun {
  options: Omit<import('./engine-adapter.ts').BenchEngineOptions, 'onHandOver' | 'templateDir'>;
  count: number;
}

export type HostAnswer = { perSecond: number; seconds: number; cpuUsPerJob: number; detail: string } | { error: string };

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

async function drain(run: HostRun): Promise<HostAnswer> {
  const clock = new FirstJobClock();
  const engine = await startBenchEngine(tree, { ...run.options, templateDir: path.join(root as string, 'templates'), onHandOver: () => clock.mark() });
  await engine.committed(run.count);
  const timed = clock.stop(run.count);
  await engine.stop();
  return { ...timed, detail: engineDetail(engine) };
}

process.on('message', (run: HostRun) => {
  drain(run).then(send, (error: unknown) => send({ error: String((error as Error)?.stack ?? error) }));
});
// The bench closing the channel is the end of this host.
process.once('disconnect', () => {
  void tracing.shutdown().finally(() => process.exit(0));
});
send({ ready: tracing.enabled ? 'tracing on' : 'tracing off' });
