// For tests of what a process does when its stdout is a pipe nobody reads (stdout-sink.test.ts,
// e2e/start/no-orphans.e2e.test.ts): a named pipe the test holds both ends of, what it holds now
// read without waiting, and the pipe filled to the last byte as a reader that stopped leaves it.

import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';

export interface ProbedPipe {
  /** Non-blocking: reading takes what is there and never waits. */
  read: number;
  write: number;
  /** The reader gone: writes fail with EPIPE from now on. */
  closeReader(): void;
  close(): void;
}

/** A named pipe at `folder`/`name` (Linux, macOS: mkfifo). */
export function openProbedPipe(folder: string, name = 'pipe'): ProbedPipe {
  const file = path.join(folder, name);
  execFileSync('mkfifo', [file]);
  const read = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const write = openSync(file, constants.O_WRONLY);
  const open = new Set([read, write]);
  // Each end closed once: a number closed twice may by then be another file's.
  const closeEnd = (fd: number) => {
    if (open.delete(fd)) closeSync(fd);
  };
  return {
    read,
    write,
    closeReader: () => closeEnd(read),
    close: () => {
      closeEnd(read);
      closeEnd(write);
    },
  };
}

/** Everything the pipe holds now. */
export function readAvailable(fd: number): string {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(65_536);
  for (;;) {
    try {
      const n = readSync(fd, buffer);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  return Buffer.concat(chunks).toString();
}

/** Fills the pipe to the last byte through a non-blocking write end of its own (Linux: /proc). */
export function fillPipe(writeFd: number): void {
  const own = openSync(`/proc/self/fd/${writeFd}`, constants.O_WRONLY | constants.O_NONBLOCK);
  try {
    for (const size of [4096, 1]) {
      for (;;) {
        try {
          writeSync(own, Buffer.alloc(size, 'x'));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(own);
  }
}
