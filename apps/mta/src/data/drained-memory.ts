// Memory while draining a refused message (oversize, smuggling, over budget). Nothing of it is
// kept, yet every socket read arrives in a freshly allocated buffer, and V8 frees those only when
// it collects garbage — which, for buffers, it starts on external-memory pressure of some 64 MiB.
// A 200 MB attempt thus peaked 70-90 MiB above the process's size, where the issue allows a few
// MB. A minor collection (a scavenge of the young generation, where the buffers' small wrappers
// live: well under a millisecond) every couple of MiB drained frees them as we go: measured peak
// +6-8 MiB for 200 MiB drained (e2e/mta/main-process.e2e.test.ts).
import v8 from 'node:v8';
import vm from 'node:vm';

/** Drained bytes between two minor collections. */
export const DRAINED_BYTES_PER_COLLECTION = 2 * 1024 * 1024;

type CollectGarbage = (options: { type: 'minor' | 'major' }) => void;
let collect: CollectGarbage | null = null;

/** V8's own gc(), obtained once: --expose-gc set at run time, then read from a fresh context. */
function minorCollector(): CollectGarbage {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as CollectGarbage;
  }
  return collect;
}

/** Counts what a collector drains and frees the garbage every DRAINED_BYTES_PER_COLLECTION. */
export class DrainedMemory {
  private sinceCollection = 0;

  drained(bytes: number): void {
    this.sinceCollection += bytes;
    if (this.sinceCollection < DRAINED_BYTES_PER_COLLECTION) return;
    this.sinceCollection = 0;
    minorCollector()({ type: 'minor' });
  }
}
