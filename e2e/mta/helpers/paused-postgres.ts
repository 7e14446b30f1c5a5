// docker pause / unpause of a dedicated PostgreSQL: a hang, not a refusal. Connections stay open
// and statements sent meanwhile wait in the server's socket buffer; they run when it resumes.
import { type DedicatedPostgres, pauseContainer, unpauseContainer } from '../../harness/index.ts';

export async function pausePostgres(postgres: DedicatedPostgres): Promise<void> {
  await pauseContainer(postgres.container.getId());
}

export async function unpausePostgres(postgres: DedicatedPostgres): Promise<void> {
  await unpauseContainer(postgres.container.getId());
}
