// One `postern <command>` (bin/postern.ts) as an operator starts it, for what a process does at
// start with the environment it is given: `migrate` runs to its end; `mta`, `core` and `api` run
// until they say they started (then SIGTERM) or exit by themselves. A process that does neither
// within the deadline is killed and reported as hung: a start must end one way or the other.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { repoRoot } from '../../core/helpers/engine.ts';

export type PosternCommand = 'migrate' | 'mta' | 'core' | 'api';

export interface PosternRun {
  /** 'started' (said it started; stopped by the test), 'exited' (by itself), 'hung' (killed at the deadline). */
  ended: 'started' | 'exited' | 'hung';
  code: number | null;
  /** stdout and stderr, line by line. */
  lines: string[];
  /** The fatal line's message, when there is one. */
  fatal: string | null;
}

/** Each listener on a port the OS picks, the engine without a relay: only the database matters here. */
const QUIET_ENV: Record<string, string> = {
  MAIL_LOG_FORMAT: 'json',
  MAIL_SHUTDOWN_TIMEOUT: '5s',
  MAIL_SMTP_LISTEN_ADDR: '127.0.0.1:0',
  MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
  MAIL_MTA_HOSTNAME: 'mx.postern.test',
  MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
  MAIL_API_HTTP_ADDR: '127.0.0.1:0',
  MAIL_SMTP_MODE: 'stub',
  MAIL_SMTP_FROM: 'postern@postern.test',
};

function fatalOf(lines: string[]): string | null {
  for (const line of lines) {
    try {
      const parsed = JSON.parse(line) as { level?: number | string; msg?: string };
      if (parsed.level === 60 || parsed.level === 'fatal') return parsed.msg ?? null;
    } catch {
      // Not a log line (a Node warning on stderr).
    }
  }
  return null;
}

export function runPostern(command: PosternCommand, env: Record<string, string>, deadlineMs = 90_000): Promise<PosternRun> {
  const child = spawn(process.execPath, ['bin/postern.ts', command], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, ...QUIET_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let ended: PosternRun['ended'] = 'exited';
  const started = new RegExp(`"msg":"${command} started"`);
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      if (ended === 'exited' && started.test(line)) {
        ended = 'started';
        child.kill('SIGTERM');
      }
    });
  }
  const deadline = setTimeout(() => {
    ended = 'hung';
    child.kill('SIGKILL');
  }, deadlineMs);
  // 'close', not 'exit': every line it wrote has been read.
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(deadline);
      resolve({ ended, code, lines, fatal: fatalOf(lines) });
    });
  });
}
