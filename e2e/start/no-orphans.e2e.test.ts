// `npm start` never leaves a process behind: whichever of its processes is killed outright, and
// whatever its stdout is, every process it started ends, PostgreSQL stops cleanly and the data
// folder is free for the next start. Measured before: with stdout a pipe nobody read any more,
// killing npm left the launcher and scripts/start.ts alive, ignoring SIGTERM (start.ts stuck writing
// its last log line into the full pipe), and SIGTERM itself never ended `npm start`; killing the
// launcher left scripts/start.ts, the three apps and PostgreSQL running on their ports.
// Linux only: it reads the process tree from /proc.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterEach, describe, expect, it } from 'vitest';
import { fillPipe, openProbedPipe, readAvailable } from '../../packages/shared/src/logging/pipe-probe.ts';
import { waitFor } from '../harness/index.ts';

const root = path.resolve(import.meta.dirname, '..', '..');

interface Proc {
  pid: number;
  /** Start time in clock ticks since boot: a pid reused later is another process. */
  start: string;
  command: string;
}

/** Every process on the machine that is alive (a zombie has ended), with its parent. */
function processes(): Array<Proc & { ppid: number }> {
  const found: Array<Proc & { ppid: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command (which may hold spaces) in parentheses: state, ppid, ..., starttime (22nd).
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' || fields[0] === 'X') continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      found.push({ pid: Number(entry), ppid: Number(fields[1]), start: fields[19] ?? '', command });
    } catch {
      // Ended while being read.
    }
  }
  return found;
}

function descendantsOf(rootPid: number): Proc[] {
  const all = processes();
  const tree: Proc[] = [];
  const parents = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const proc of all) {
      if (!parents.has(proc.pid) && parents.has(proc.ppid)) {
        parents.add(proc.pid);
        tree.push(proc);
        grew = true;
      }
    }
  }
  return tree;
}

function stillAlive(tree: Proc[]): Proc[] {
  const now = new Map(processes().map((proc) => [proc.pid, proc.start]));
  return tree.filter((proc) => now.get(proc.pid) === proc.start);
}

interface Running {
  npm: ChildProcess;
  /** Every process of this `npm start`, taken once all its apps answered /readyz. */
  tree: Proc[];
  dataDir: string;
  /** Output read so far; nothing more is read once the test stops reading. */
  output: () => string;
  /** The pipe's write end as the test holds it (to fill it). */
  pipeWriteFd: number;
  exitCode: () => number | null | undefined;
}

describe.skipIf(process.platform !== 'linux')('npm start leaves no process behind', () => {
  const cleanup: Array<() => void> = [];

  afterEach(() => {
    for (const step of cleanup.splice(0).reverse()) step();
  });

  /** `npm start` on its own data folder and ports, stdout and stderr into a named pipe the test reads. */
  async function startPostern(): Promise<Running> {
    const folder = mkdtempSync(path.join(tmpdir(), 'postern-orphans-'));
    // As root the embedded server runs as the user postgres, which must reach the data folder.
    chmodSync(folder, 0o755);
    const dataDir = path.join(folder, 'data');
    const pipe = openProbedPipe(folder, 'stdout');
    const { read: readFd, write: writeFd } = pipe;
    const ports = { smtp: await getPort(), mtaHttp: await getPort(), internal: await getPort(), api: await getPort() };
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      POSTERN_DATA_DIR: dataDir,
      POSTERN_EMBEDDED_PG_PORT: String(await getPort()),
      MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${ports.smtp}`,
      MAIL_MTA_HTTP_ADDR: `127.0.0.1:${ports.mtaHttp}`,
      MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${ports.internal}`,
      MAIL_API_HTTP_ADDR: `127.0.0.1:${ports.api}`,
      MAIL_SHUTDOWN_TIMEOUT: '10s',
    };
    const npm = spawn('npm', ['start'], { cwd: root, env, stdio: ['ignore', writeFd, writeFd] });
    let exitCode: number | null | undefined;
    npm.once('exit', (code) => {
      exitCode = code;
    });
    let output = '';
    let tree: Proc[] = [];
    cleanup.push(() => {
      // A failed test must not leave its processes behind either.
      for (const proc of stillAlive(tree)) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
      if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
      pipe.close();
      rmSync(folder, { recursive: true, force: true });
    });
    await waitFor(
      'npm start to say that Postern is running',
      () => {
        output += readAvailable(readFd);
        return output;
      },
      (text) => text.includes('Postern is running') || exitCode !== undefined,
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    expect(exitCode, output.slice(-3000)).toBeUndefined();
    for (const port of [ports.mtaHttp, ports.internal, ports.api]) {
      await waitFor(
        `127.0.0.1:${port}/readyz to answer 200`,
        async () => {
          output += readAvailable(readFd);
          return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
        },
        (status) => status === 200,
        { timeoutMs: 90_000, intervalMs: 200 },
      );
    }
    tree = descendantsOf(npm.pid ?? -1);
    for (const part of ['scripts/launch.cjs', 'scripts/start.ts', 'scripts/embedded-postgres.ts', 'apps/mta/src/main.ts', 'apps/core/src/main.ts', 'apps/api/src/main.ts', 'postgres -D']) {
      expect(
        tree.some((proc) => proc.command.includes(part)),
        `${part} among ${tree.map((proc) => proc.command).join('\n')}`,
      ).toBe(true);
    }
    tree.unshift({ pid: npm.pid ?? -1, start: processes().find((proc) => proc.pid === npm.pid)?.start ?? '', command: 'npm start' });
    return { npm, tree, dataDir, output: () => output, pipeWriteFd: writeFd, exitCode: () => exitCode };
  }

  /** Every process of that start ends, PostgreSQL stopped cleanly and the data folder is free. */
  async function expectNothingLeft(running: Running, what: string): Promise<void> {
    const left = await waitFor(
      `every process of npm start to end after ${what}`,
      () => stillAlive(running.tree.slice(1)).map((proc) => `${proc.pid} ${proc.command}`),
      (alive) => alive.length === 0,
      { timeoutMs: 90_000, intervalMs: 200 },
    ).catch((error: Error) => error.message);
    expect(left, running.output().slice(-3000)).toEqual([]);
    expect(existsSync(path.join(running.dataDir, 'embedded-postgres.pid')), 'the start still holds the data folder').toBe(false);
    expect(existsSync(path.join(running.dataDir, 'postgres', 'postmaster.pid')), 'PostgreSQL did not stop cleanly').toBe(false);
  }

  it('npm killed outright while its stdout is a pipe nobody reads any more', { timeout: 300_000 }, async () => {
    const running = await startPostern();
    fillPipe(running.pipeWriteFd);
    running.npm.kill('SIGKILL');
    await expectNothingLeft(running, 'npm was killed with its stdout full');
  });

  it('the launcher (scripts/launch.cjs) killed outright', { timeout: 300_000 }, async () => {
    const running = await startPostern();
    const launcher = running.tree.find((proc) => proc.command.includes('scripts/launch.cjs'));
    process.kill(launcher?.pid ?? -1, 'SIGKILL');
    await expectNothingLeft(running, 'the launcher was killed');
  });

  it('SIGTERM while stdout is a pipe nobody reads any more: npm start stops and exits 0', { timeout: 300_000 }, async () => {
    const running = await startPostern();
    fillPipe(running.pipeWriteFd);
    running.npm.kill('SIGTERM');
    const code = await waitFor('npm start to exit after SIGTERM', running.exitCode, (value) => value !== undefined, {
      timeoutMs: 90_000,
      intervalMs: 200,
    }).catch((error: Error) => error.message);
    expect(code).toBe(0);
    await expectNothingLeft(running, 'SIGTERM');
  });
});
