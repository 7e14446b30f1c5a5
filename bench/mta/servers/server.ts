// What every server of the edge benchmark is to the bench (Postern, Postfix, Haraka, smtp-server
// alone, smtp-sink), and the process chores they share: a free port, waiting for a listener,
// stopping a child, reading a process's CPU time and peak memory from /proc (a process and its
// children: the edge with MAIL_MTA_PROCESSES > 1 is a primary and its workers), the file system
// their fsyncs go to. The machine's CPU pressure is bench/machine/cpu.ts's.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import getPort from 'get-port';

export interface BenchServer {
  /** Column name in the tables. */
  name: string;
  port: number;
  /** Where the reject path's client finds the server refusing the bench's unknown recipient, the
   *  reply code of that refusal, and the process refusing when it is not `pid` (smtp-sink runs a
   *  second one for it); absent: the server has no reject path. */
  refusal?: { port: number; code: number; pid?: number };
  /** The process whose CPU time (its own and its children's) is reported per message, when the
   *  server is one process or one process with children (Postern's edge with its workers). */
  pid?: number;
  /** Messages the server has stored, and the 250s it gave for a byte-identical message it had
   *  just stored (a retry to it; Postern's duplicate window), when it can tell: checked against
   *  the 250s the clients saw. Postern also says how many messages its accept statements held on
   *  average (group commit: more concurrent sessions in one process, larger batches). */
  stored?(): Promise<{ stored: number; duplicates: number; acceptBatchMean?: number }>;
  /** Resolves once the work a round left behind is done (Postfix: its queue handed to discard), so
   *  that it does not run during the next server's round; called after each of the server's rounds. */
  settle?(): Promise<void>;
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

/** Resolves once http://127.0.0.1:port/readyz answers 200; fails if `alive()` says the server died. */
export async function waitForReady(port: number, what: string, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${what} exited before it was ready`);
    const status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} was not ready (/readyz on port ${port}) within 60 s`);
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  await exited;
  clearTimeout(killer);
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces); null when gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The live children of a process: /proc/<pid>/task/<tid>/children, else every process's parent pid. */
export function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
    );
  } catch {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number)
      .filter((candidate) => Number(statFields(candidate)?.[1]) === pid);
  }
}

/** The process and its descendants. */
export function processTree(pid: number): number[] {
  return [pid, ...childPids(pid).flatMap(processTree)];
}

/** User + system CPU seconds so far of a process, of its live descendants, and of the children it
 *  has reaped (a worker that exited; cutime + cstime): the whole server (Linux /proc; NaN elsewhere). */
export function cpuSeconds(pid: number): number {
  const own = statFields(pid);
  if (!own) return Number.NaN;
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const child of processTree(pid).slice(1)) {
    const fields = statFields(child);
    // A live child: its own time and what it reaped (its children's own time lands there when they exit).
    if (fields) ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return ticks / 100;
}

/** The file system a path is on (ext4, tmpfs, ...): an fsync on tmpfs costs nothing. */
export function fileSystemOf(path: string): string {
  try {
    return execFileSync('df', ['--output=fstype', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').at(-1) ?? '?';
  } catch {
    return '?';
  }
}

/** Peak resident memory in MiB (VmHWM) of a process and its live descendants, summed (an upper bound
 *  of their peak together), NaN if unknown. */
export function peakRssMiB(pid: number): number {
  let kib = 0;
  for (const member of processTree(pid)) {
    try {
      const status = readFileSync(`/proc/${member}/status`, 'utf8');
      kib += Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
    } catch {
      if (member === pid) return Number.NaN;
    }
  }
  return kib / 1024;
}
