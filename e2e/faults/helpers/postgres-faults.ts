// Faults of PostgreSQL itself, on a dedicated container (e2e/harness/dedicated-postgres.ts): stopped
// (connections refused and cut) or paused (docker pause: connections stay open and nothing answers,
// a hang rather than a refusal). Each fault lasts its stated time on purpose: the outage is the
// experiment, not a wait for a state.
import { execFile } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { DedicatedPostgres } from '../../harness/index.ts';

const run = promisify(execFile);

/** Stops PostgreSQL for `ms`, starts it and waits until it answers; resolves with the time it answered again. */
export async function stopPostgresFor(postgres: DedicatedPostgres, ms: number): Promise<number> {
  await postgres.stop();
  await delay(ms);
  await postgres.start();
  return Date.now();
}

/** Freezes PostgreSQL (docker pause); resolves, once it is frozen, with the function that thaws it. */
export async function pausePostgres(postgres: DedicatedPostgres): Promise<() => Promise<number>> {
  await run('docker', ['pause', postgres.container.getId()]);
  return async () => {
    await run('docker', ['unpause', postgres.container.getId()]);
    return Date.now();
  };
}
