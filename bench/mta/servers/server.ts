// What every server of the edge benchmark is to the bench (Postern, Postfix, Haraka, smtp-sink), and
// the process chores they share: a free port, waiting for a listener, stopping a child, reading a
// process's CPU time and peak memory from /proc, the file system their fsyncs go to.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import getPort from 'get-port';

export interface BenchServer {
  /** Column name in the tables. */
  name: string;
  port: number;
  /** Whether it refuses unknown recipients (smtp-sink accepts everything: no reject path). */
  refusesUnknown: boolean;
  /** The process whose CPU time is reported per message, when the server is one process. */
  pid?: number;
  /** Messages the server has stored, and the 250s it gave for a byte-identical message it had
   *  just stored (a retry to it; Postern's duplicate window), when it can tell: checked against
   *  the 250s the clients saw. */
  stored?(): Promise<{ stored: number; duplicates: number }>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return getPort({ host: '127.0.0.1' });
}

/** Resolves once 127.0.0.1:port accepts connections; fails if `alive()` says the server died. */
export async function waitForPort(port: number, what: string, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${what} exited before opening port ${port}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not open port ${port} within 60 s`);
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  await exited;
  clearTimeout(killer);
}

/** User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The file system a path is on (ext4, tmpfs, ...): an fsync on tmpfs costs nothing. */
export function fileSystemOf(path: string): string {
  try {
    return execFileSync('df', ['--output=fstype', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').at(-1) ?? '?';
  } catch {
    return '?';
  }
}

/** Peak resident memory of a process in MiB (VmHWM), NaN if unknown. */
export function peakRssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
    return kib ? Number(kib) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
