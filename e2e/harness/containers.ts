// Starting the real infrastructure the suites talk to. Every container carries the label
// postern.e2e=<run id> so a run's leftovers can be found (docker ps --filter label=postern.e2e).
import { PostgreSqlContainer, type StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { GenericContainer, getContainerRuntimeClient, type StartedNetwork, type StartedTestContainer, Wait } from 'testcontainers';
import { images } from './images.ts';

export const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
export const labels = { 'postern.e2e': RUN_ID };

/** A Docker network to join and the name the other containers on it use (e2e/topology). */
export interface OnNetwork {
  network: StartedNetwork;
  alias: string;
}

function joined<T extends GenericContainer>(container: T, on: OnNetwork | undefined): T {
  return on ? container.withNetwork(on.network).withNetworkAliases(on.alias) : container;
}

export const MAILDEV_SMTP_PORT = 1025;
export const MAILDEV_WEB_PORT = 1080;

/** Fail with a message that says what to do, not a stack from deep inside the Docker client. */
export async function assertDockerAvailable(): Promise<void> {
  try {
    const client = await getContainerRuntimeClient();
    const info = client.info.containerRuntime;
    console.log(`[e2e] container runtime: ${info.host} (${info.operatingSystem}, ${info.serverVersion ?? 'unknown version'})`);
  } catch (error) {
    throw new Error(
      'e2e: no Docker engine answers. The integration suites need real containers and never fall back to ' +
        "the machine's own PostgreSQL or Redis. Start Docker (on a CI machine: bash scripts/ci/ensure-docker.sh) " +
        `and build local images if no registry is reachable (npm run images:local). Cause: ${(error as Error).message}`,
    );
  }
}

/**
 * Ready once pg_isready answers, checked only while it starts. The postgres module's own readiness
 * is a Docker health check, pg_isready through `docker exec` every 250 ms for the container's whole
 * life: each exec starts a `runc init`, and with a few PostgreSQL containers up at once (the shared
 * one, a fault test's own, a standby pair) on a busy 2-core machine they queued up behind each other
 * (83 `runc init` and 34 `pg_isready` running at once, load average 230, seen with four test
 * runs side by side). A health check of our own, run once a day, keeps the module from adding its
 * own; nothing waits for it.
 */
export function readyWhenPgIsReady(container: PostgreSqlContainer, username: string, database: string): PostgreSqlContainer {
  return container
    .withHealthCheck({ test: ['CMD', 'true'], interval: 86_400_000 })
    .withWaitStrategy(Wait.forAll([Wait.forSuccessfulCommand(`pg_isready --host localhost --username ${username} --dbname ${database}`), Wait.forListeningPorts()]));
}

export async function startPostgres(on?: OnNetwork): Promise<StartedPostgreSqlContainer> {
  return readyWhenPgIsReady(joined(new PostgreSqlContainer(images.postgres), on), 'postern', 'postern_admin')
    .withLabels(labels)
    .withUsername('postern')
    .withPassword('postern')
    .withDatabase('postern_admin')
    // Durability is not under test here and fsync on a shared CI disk is the slowest thing in it.
    .withCommand(['postgres', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'])
    .start();
}

export async function startRedis(on?: OnNetwork): Promise<StartedRedisContainer> {
  return joined(new RedisContainer(images.redis), on).withLabels(labels).start();
}

export async function startMaildev(on?: OnNetwork): Promise<StartedTestContainer> {
  return joined(new GenericContainer(images.maildev), on)
    .withLabels(labels)
    .withExposedPorts(MAILDEV_SMTP_PORT, MAILDEV_WEB_PORT)
    .withWaitStrategy(Wait.forHttp('/api/healthz', MAILDEV_WEB_PORT).forStatusCode(200))
    .withStartupTimeout(60_000)
    .start();
}

export function describeContainer(role: string, container: StartedTestContainer, image: string): string {
  return `[e2e] ${role}: image ${image}, container ${container.getId().slice(0, 12)} at ${container.getHost()}:${container
    .getFirstMappedPort()
    .toString()}`;
}
