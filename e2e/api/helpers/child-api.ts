// The real process, `node apps/api/src/main.ts`, for tests that need a process boundary (its boot,
// its exit on SIGTERM, an SDK that is per process), ready when /readyz answers 200.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import getPort from 'get-port';
import { waitFor } from '../../harness/index.ts';
import { REPO_ROOT, TEMPLATE_DIR } from './api.ts';

export interface ChildApi {
  process: ChildProcess;
  /** http://127.0.0.1:<port> */
  origin: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
}

export async function spawnApi(dsn: string, env: Record<string, string> = {}): Promise<ChildApi> {
  const port = await getPort();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'apps/api/src/main.ts')], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_API_HTTP_ADDR: `127.0.0.1:${port}`,
      MAIL_TEMPLATE_DIR: TEMPLATE_DIR,
      MAIL_LOG_LEVEL: 'info',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
  }
  const api = { process: child, origin: `http://127.0.0.1:${port}`, output: () => output };
  await waitFor(
    'the API process to be ready',
    async () => {
      if (child.exitCode !== null) throw new Error(`exited early: ${output}`);
      return (await fetch(`${api.origin}/readyz`)).status;
    },
    (status) => status === 200,
    { timeoutMs: 30_000 },
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  return api;
}
