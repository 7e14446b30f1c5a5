// docker pause / unpause of a dedicated PostgreSQL: a hang, not a refusal. Connections stay open
// and statements sent meanwhile wait in the server's socket buffer; they run when it resumes.
import { execFile } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { DedicatedPostgres } from '../../harness/index.ts';

const run = promisify(execFile);

/** Freezing a cgroup whose processes are busy sometimes fails ("unable to freeze"); it is retried. */
export async function pausePostgres(postgres: DedicatedPostgres): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await run('docker', ['pause', postgres.container.getId()]);
      return;
    } catch (error) {
      if (attempt >= 10) throw error;
      await delay(100);
    }
  }
}

export async function unpausePostgres(postgres: DedicatedPostgres): Promise<void> {
  await run('docker', ['unpause', postgres.container.getId()]);
}
