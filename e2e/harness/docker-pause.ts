// docker pause / unpause of a test's container: a hang, not a refusal (connections stay open and
// nothing answers until it is resumed). One place for it, because freezing a cgroup whose
// processes are busy sometimes fails on a loaded machine ("OCI runtime pause failed: unable to
// freeze"): seen failing a DNS test at a load of 27; retried here, as a fault the test did not ask for.
import { execFile } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Freezes the container; resolves once it is frozen. */
export async function pauseContainer(id: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await run('docker', ['pause', id]);
      return;
    } catch (error) {
      if (attempt >= 10 || !/unable to freeze/i.test(String((error as { stderr?: string }).stderr ?? error))) throw error;
      await delay(100 * attempt);
    }
  }
}

/** Thaws a frozen container. */
export async function unpauseContainer(id: string): Promise<void> {
  await run('docker', ['unpause', id]);
}
