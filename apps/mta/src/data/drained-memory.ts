// Memory while draining a refused message (oversize, smuggling, over budget). Nothing of it is
// kept, yet every socket read arrives in a freshly allocated buffer, and V8 frees those only when
// it collects garbage — which, for buffers, it starts on external-memory pressure of some 64 MiB.
// A 200 MB attempt thus peaks 70-90 MiB above the process's size, where a few MB are the aim
// (docs/mta.md). A minor collection (a scavenge of the young generation, where the buffers' small wrappers
// live: well under a millisecond) every couple of MiB drained frees them as we go: measured peak
// +6-8 MiB for 200 MiB drained (e2e/mta/main-process.e2e.test.ts).
//
// V8's gc() is offered to JavaScript by a documented Node option, --expose-gc, given when the
// process starts (EDGE_NODE_FLAGS: the mta package's start script, scripts/start.ts, the tests
// and the benchmark that spawn the edge). A process started without it still works: the drained
// buffers are then freed on V8's own schedule, which bounds them by its external-memory pressure
// only, and the edge says so once when it starts (warnWithoutCollector).
import type { Logger } from '@postern/shared';

/** The Node options the edge's process is started with. */
export const EDGE_NODE_FLAGS: readonly string[] = ['--expose-gc'];

/** Drained bytes between two minor collections. */
export const DRAINED_BYTES_PER_COLLECTION = 2 * 1024 * 1024;

type MinorCollector = (options: { type: 'minor' }) => void;

/** V8's gc() when the process was started with --expose-gc, else null. */
export function exposedCollector(): MinorCollector | null {
  return globalThis.gc ?? null;
}

/** Logs, at start, that the drained buffers will wait for V8's own collections. */
export function warnWithoutCollector(logger: Logger, collector = exposedCollector()): void {
  if (collector) return;
  logger.warn(
    { missingNodeFlags: EDGE_NODE_FLAGS },
    'node was started without --expose-gc: the buffers of refused messages are freed by V8 on its own schedule, not as they are drained (memory peaks higher while a large message is drained)',
  );
}

/** Counts what a collector drains and frees the garbage every DRAINED_BYTES_PER_COLLECTION. */
export class DrainedMemory {
  private sinceCollection = 0;
  private readonly collect: MinorCollector | null;

  constructor(collect = exposedCollector()) {
    this.collect = collect;
  }

  drained(bytes: number): void {
    this.sinceCollection += bytes;
    if (this.sinceCollection < DRAINED_BYTES_PER_COLLECTION) return;
    this.sinceCollection = 0;
    this.collect?.({ type: 'minor' });
  }
}
