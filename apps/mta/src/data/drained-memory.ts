// Memory while draining a refused message (oversize, smuggling, over budget). Nothing of it is
// kept, yet every socket read arrives in a freshly allocated buffer, and V8 frees those only when
// it collects garbage — which, for buffers, it starts on external-memory pressure of some 64 MiB.
// A 200 MB attempt thus peaks 70-90 MiB above the process's size, where a few MB are the aim
// (docs/mta.md). A minor collection (a scavenge of the young generation, where the buffers' small wrappers
// live: well under a millisecond) every couple of MiB drained frees them as we go: measured peak
// +6-8 MiB for 200 MiB drained (e2e/mta/main-process.e2e.test.ts).
//
// V8's gc() is what runs that collection. Node offers it as globalThis.gc to a process started with
// --expose-gc; the edge does not depend on how it was started (the container image, systemd units
// and `postern mta` start plain `node`): without the option it sets the same V8 flag through
// node:v8 and takes gc() from a fresh context, once per process — the way jest's leak detector
// gets it — and sets the flag back, so no other context gains a gc(). Only if that fails too do the
// drained buffers wait for V8's own collections, and the edge says so once when it starts
// (warnWithoutCollector).
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from '@postern/shared';

/** Drained bytes between two minor collections. */
export const DRAINED_BYTES_PER_COLLECTION = 2 * 1024 * 1024;

/** V8's gc() with the options the edge and its tests use. */
export type Collector = (options: { type: 'minor' | 'major' }) => void;

let collector: Collector | null | undefined;

/** V8's gc(): globalThis.gc under --expose-gc, else the same function got at run time; null when
 *  neither is possible. Looked up once per process. */
export function exposedCollector(): Collector | null {
  if (collector === undefined) collector = globalThis.gc ?? collectorFromV8();
  return collector;
}

function collectorFromV8(): Collector | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    return typeof gc === 'function' ? (gc as Collector) : null;
  } catch {
    return null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

/** Warns once at start when V8's gc() could not be had: drained buffers then wait for V8. */
export function warnWithoutCollector(logger: Logger, collect = exposedCollector()): void {
  if (collect) return;
  logger.warn(
    { collector: 'unavailable' },
    "V8's gc() could not be had (neither --expose-gc nor through node:v8): the buffers of refused messages are freed by V8 on its own schedule, not as they are drained (memory peaks higher while a large message is drained)",
  );
}

/** Counts what a collector drains and frees the garbage every DRAINED_BYTES_PER_COLLECTION. */
export class DrainedMemory {
  private sinceCollection = 0;
  private readonly collect: Collector | null;

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
