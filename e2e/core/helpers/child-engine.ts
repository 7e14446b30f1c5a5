// The real process, `node apps/core/src/main.ts`, for tests that need a process boundary: boot,
// SIGTERM -> exit 0, SIGKILL mid-batch.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { waitFor } from '../../harness/index.ts';
import { repoRoot, TEMPLATE_DIR } from './engine.ts';

export interface ChildEngine {
  process: ChildProcess;
  logLines: string[];
  exited: { done: boolean; code: number | null; signal: string | null };
  httpPort: number;
  workerId: string;
}

export async function spawnEngine(env: Record<string, string>): Promise<ChildEngine> {
  const child = spawn(process.execPath, ['apps/core/src/main.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: TEMPLATE_DIR,
      MAIL_SMTP_FROM: 'postern@postern.test',
      MAIL_LOG_LEVEL: 'info',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const engine: ChildEngine = { process: child, logLines: [], exited: { done: false, code: null, signal: null }, httpPort: 0, workerId: '' };
  // 'close', not 'exit': exited, and every line it wrote read ('exit' may come before the last
  // lines are read from the pipe; a test that reads the log once the process is gone needs them all).
  child.on('close', (code, signal) => Object.assign(engine.exited, { done: true, code, signal }));
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => engine.logLines.push(line));
  }
  await waitFor(
    'the engine process to open its HTTP listener',
    () => {
      if (engine.exited.done) throw new Error(`exited early: ${engine.logLines.join('\n')}`);
      for (const line of engine.logLines) {
        if (!line.includes('HTTP listener open')) continue;
        const parsed = JSON.parse(line) as { address?: string; workerId?: string };
        engine.httpPort = Number(parsed.address?.split(':').pop());
        engine.workerId = parsed.workerId ?? '';
      }
      return engine.httpPort > 0;
    },
    Boolean,
    { timeoutMs: 30_000 },
  );
  return engine;
}
