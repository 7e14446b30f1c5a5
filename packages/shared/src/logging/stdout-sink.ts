// Where every Postern process writes its log lines when stdout is not a terminal: a sink that never
// holds the process up. Node writes to a pipe synchronously on Linux, and a pipe nobody reads any
// more (a supervisor killed, a `| less` left paused) fills at 64 KiB: the next write then blocked
// the event loop for good, so SIGTERM handlers never ran, and pino's exit-time flush waited on the
// full pipe (or retried forever once its reader was gone). Measured: `npm start` with its output
// piped to a reader that stopped left processes that ignored SIGTERM (docs/deploy.md, Logs).
//
// So a pipe is opened a second time, non-blocking (/proc/self/fd/N: its own open file description,
// so the flag reaches no other process sharing the pipe). A line the pipe cannot take now waits in
// a bounded queue, tried again before the next line and on a timer; past the bound whole lines are
// dropped and counted, and the count is said in a line of its own once the pipe takes lines again.
// At exit what is queued gets a bounded grace, then is given up. A file is written as before (it
// does not fill up); so is a socket, or any stdout where /proc is missing (macOS): there a write
// may still block.
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';

export interface StdoutSinkOptions {
  /** Default 1 (stdout). */
  fd?: number;
  /** Lines waiting for the pipe beyond this many bytes are dropped (default 16 MiB). */
  maxQueuedBytes?: number;
  /** How often a full pipe is tried again (default 50 ms). */
  retryMs?: number;
  /** How long the exit waits for a full pipe to take what is queued (default 1 s). */
  exitGraceMs?: number;
  /** The line that says how many lines were dropped (with its newline). */
  describeDrops?: (dropped: number) => string;
}

export interface StdoutSink {
  write(line: string): void;
  /** Writes what the pipe takes now, never waiting; calls back at once. */
  flush(callback?: (error?: Error) => void): void;
  /** Lines dropped so far because the pipe could not take them (or its reader was gone). */
  readonly dropped: number;
  /** Bytes waiting for the pipe. */
  readonly queuedBytes: number;
}

// Large enough that a burst (a debug-level log of a busy second, a reader a moment behind: a
// container runtime's log reader under load) loses nothing; small beside the process's memory. The
// bound is for a reader that stopped, not for one that is slow.
const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
const DEFAULT_RETRY_MS = 50;
const DEFAULT_EXIT_GRACE_MS = 1_000;

/** A file descriptor of the same pipe that never blocks, or `fd` itself where there is none. */
function nonBlockingFd(fd: number): { fd: number; ownFd: boolean } {
  try {
    if (!fstatSync(fd).isFIFO()) return { fd, ownFd: false };
    return { fd: openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK), ownFd: true };
  } catch {
    // No /proc (macOS), or a pipe whose reader is already gone (ENXIO): writes to fd itself then
    // fail with EPIPE rather than block, and are dropped below.
    return { fd, ownFd: false };
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function createStdoutSink(options: StdoutSinkOptions = {}): StdoutSink {
  const target = nonBlockingFd(options.fd ?? 1);
  const maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  const exitGraceMs = options.exitGraceMs ?? DEFAULT_EXIT_GRACE_MS;
  const queue: Buffer[] = [];
  let queuedBytes = 0;
  let dropped = 0;
  let droppedSaid = 0;
  let gone = false;
  let retry: NodeJS.Timeout | undefined;

  /** Bytes of `chunk` the pipe took now (0 when full), -1 once the reader is gone: then every
   *  queued line is dropped, counted. */
  const tryWrite = (chunk: Buffer): number => {
    try {
      return writeSync(target.fd, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      // EPIPE (nobody will ever read) or worse: nothing more is written, every line is counted.
      gone = true;
      dropped += queue.length;
      queue.length = 0;
      queuedBytes = 0;
      return -1;
    }
  };

  /** Writes queued lines until the pipe is full; true when nothing is left waiting. */
  const drain = (): boolean => {
    while (queue.length > 0 && !gone) {
      const head = queue[0] as Buffer;
      const written = tryWrite(head);
      if (written < 0) return true;
      queuedBytes -= written;
      if (written < head.length) {
        queue[0] = head.subarray(written);
        return false;
      }
      queue.shift();
    }
    if (!gone && dropped > droppedSaid && options.describeDrops) {
      // Said once the pipe takes lines again, as a line of its own; counted even if it is dropped too.
      const count = dropped - droppedSaid;
      droppedSaid = dropped;
      enqueue(Buffer.from(options.describeDrops(count)));
      return queue.length === 0;
    }
    return true;
  };

  const schedule = () => {
    if (retry || gone) return;
    // Unreferenced: lines waiting for a pipe nobody reads must not keep the process alive.
    retry = setTimeout(() => {
      retry = undefined;
      if (!drain()) schedule();
    }, retryMs);
    retry.unref();
  };

  const enqueue = (chunk: Buffer) => {
    // What waits goes first, and goes as soon as the reader has room, not only at the retry timer:
    // with the timer alone a pipe full once took 64 KiB per retryMs however fast its reader was,
    // and a burst a reader kept up with was mostly dropped (stdout-sink.test.ts).
    if (queue.length > 0) drain();
    if (gone) {
      dropped += 1;
      return;
    }
    if (queue.length === 0) {
      const written = tryWrite(chunk);
      if (written < 0) dropped += 1;
      if (written < 0 || written === chunk.length) return;
      // A line is never cut: the rest of one the pipe took in part waits whatever the bound.
      queue.push(chunk.subarray(written));
      queuedBytes += chunk.length - written;
    } else if (queuedBytes + chunk.length > maxQueuedBytes) {
      dropped += 1;
      return;
    } else {
      queue.push(chunk);
      queuedBytes += chunk.length;
    }
    schedule();
  };

  process.once('exit', () => {
    const deadline = Date.now() + exitGraceMs;
    while (!drain() && Date.now() < deadline) sleepSync(10);
    if (target.ownFd) closeSync(target.fd);
  });

  return {
    write: (line) => enqueue(Buffer.from(line)),
    flush: (callback) => {
      drain();
      callback?.();
    },
    get dropped() {
      return dropped;
    },
    get queuedBytes() {
      return queuedBytes;
    },
  };
}
