// The edge as a real process (`node apps/mta/src/main.ts`) on a fixed port, so a test can SIGKILL
// it mid-DATA and start another on the same address, as a supervisor would.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { repoRoot } from '../../core/helpers/engine.ts';
import { waitFor } from '../../harness/index.ts';

export interface ChildEdge {
  process: ChildProcess;
  logLines: string[];
  exited: { done: boolean; code: number | null; signal: string | null };
}

export async function spawnEdge(dsn: string, smtpPort: number, env: Record<string, string> = {}): Promise<ChildEdge> {
  const child = spawn(process.execPath, ['apps/mta/src/main.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_SMTP_LISTEN_ADDR: `127.0.0.1:${smtpPort}`,
      MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
      MAIL_MTA_HOSTNAME: 'mx.postern.test',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      MAIL_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const edge: ChildEdge = { process: child, logLines: [], exited: { done: false, code: null, signal: null } };
  // 'close', not 'exit': exited, and every line it wrote read (e2e/core/helpers/child-engine.ts).
  child.on('close', (code, signal) => Object.assign(edge.exited, { done: true, code, signal }));
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => edge.logLines.push(line));
  }
  await waitFor(
    'the edge process to open its SMTP listener',
    () => {
      if (edge.exited.done) throw new Error(`exited early: ${edge.logLines.join('\n')}`);
      return edge.logLines.some((line) => line.includes('SMTP listener open'));
    },
    Boolean,
    { timeoutMs: 30_000 },
  );
  return edge;
}
