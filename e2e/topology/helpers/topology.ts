// The scale-out topology operators run (compose.yaml), from the real Postern image: two edges, two
// engines and the API as separate containers on one Docker network with PostgreSQL, Redis and an
// SMTP sink (maildev) standing in for the relay, addressed by name as compose addresses them.
// `postern migrate` runs first as a one-shot container; every Postern container is then awaited
// through its /readyz. The test reaches each through its mapped ports. Every Postern container's
// output (all its runs: docker logs) is written to .test-results/topology/<name>.log when the
// topology stops.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import type { StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import pg from 'pg';
import { GenericContainer, Network, type StartedNetwork, type StartedTestContainer, Wait } from 'testcontainers';
import { labels, MAILDEV_WEB_PORT, startMaildev, startPostgres, startRedis } from '../../harness/containers.ts';

const run = promisify(execFile);
const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..', '..');

/** Every Postern process's MAIL_SHUTDOWN_TIMEOUT here; `docker stop` grants more (compose: 40 s). */
export const SHUTDOWN_TIMEOUT_MS = 10_000;
const STOP_GRACE_S = 40;
const SMTP_PORT = 2525;

/** What compose.yaml gives every Postern process, with waits short enough for a test. */
const COMMON_ENV = {
  MAIL_POSTGRES_PRIMARY_DSN: 'postgres://postern:postern@postgres:5432/postern_admin',
  MAIL_REDIS_MASTER_ADDR: 'redis:6379',
  MAIL_SMTP_ADDR: 'sink:1025',
  MAIL_SMTP_FROM: 'postern@topology.test',
  MAIL_SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
  MAIL_LOG_LEVEL: 'info',
};

const EDGE_ENV = {
  // Every test connection comes from one address (the Docker gateway).
  MAIL_MTA_RATE_LIMIT_PER_MINUTE: '100000',
};

const ENGINE_ENV = {
  // A lease that runs out within the test, still above the whole-send deadline plus a tenth.
  MAIL_SMTP_TIMEOUT: '10s',
  MAIL_SMTP_SEND_DEADLINE: '15s',
  MAIL_LEASE_DURATION: '20s',
  MAIL_STREAM_RECLAIM_IDLE: '10s',
  MAIL_RETRY_LADDER: '500ms,1s,2s,4s,8s',
};

export type ServiceCommand = 'mta' | 'core' | 'api';

const HTTP_PORT: Record<ServiceCommand, number> = { mta: 4002, core: 4001, api: 4000 };

export interface Service {
  /** Container name on the network and its hostname: the engine's worker ids start with core:<name>. */
  name: string;
  command: ServiceCommand;
  container: StartedTestContainer;
  /** What it wrote, every run of the container included, since a Unix time in seconds if given. */
  logs(sinceS?: number): Promise<string>;
  /** http://host:port of its health/metrics (and, for the API, GraphQL) listener, as mapped now. */
  httpUrl(): string;
  /** The edge's SMTP port on this host, as mapped now (a restart maps it anew). */
  smtpPort(): number;
}

export interface Topology {
  image: string;
  network: StartedNetwork;
  postgres: StartedPostgreSqlContainer;
  redis: StartedRedisContainer;
  sink: StartedTestContainer;
  /** The topology's database, for the test's own queries. */
  pool: pg.Pool;
  /** A producer's connection to the topology's Redis. */
  redisClient: Redis;
  edges: [Service, Service];
  engines: [Service, Service];
  api: Service;
  sinkApiUrl(): string;
  services(): Service[];
  stop(): Promise<void>;
}

/** The first run's output as it comes, for saying why a container never became ready. */
function keepLines(logs: string[]) {
  return (stream: NodeJS.ReadableStream) => {
    stream.on('data', (chunk: Buffer | string) => logs.push(...chunk.toString().split('\n').filter(Boolean)));
  };
}

export async function docker(...args: string[]): Promise<string> {
  return (await run('docker', args, { maxBuffer: 256 * 1024 * 1024 })).stdout.trim();
}

async function logsOf(id: string, sinceS?: number): Promise<string> {
  const { stdout, stderr } = await run('docker', ['logs', ...(sinceS === undefined ? [] : ['--since', String(sinceS)]), id], {
    maxBuffer: 256 * 1024 * 1024,
  });
  return `${stdout}${stderr}`;
}

async function startService(image: string, network: StartedNetwork, name: string, command: ServiceCommand, env: Record<string, string>): Promise<Service> {
  const startLogs: string[] = [];
  const httpPort = HTTP_PORT[command];
  const container = await new GenericContainer(image)
    .withNetwork(network)
    .withNetworkAliases(name)
    .withHostname(name)
    .withLabels(labels)
    .withEnvironment({ ...COMMON_ENV, ...env })
    .withCommand([command])
    .withExposedPorts(...(command === 'mta' ? [httpPort, SMTP_PORT] : [httpPort]))
    .withLogConsumer(keepLines(startLogs))
    .withWaitStrategy(Wait.forHttp('/readyz', httpPort).forStatusCode(200))
    .withStartupTimeout(180_000)
    .start()
    .catch((error: Error) => {
      throw new Error(`${name} (postern ${command}) never answered /readyz 200: ${error.message}\n${startLogs.slice(-30).join('\n')}`);
    });
  return {
    name,
    command,
    container,
    logs: (sinceS) => logsOf(container.getId(), sinceS),
    httpUrl: () => `http://${container.getHost()}:${container.getMappedPort(httpPort)}`,
    smtpPort: () => container.getMappedPort(SMTP_PORT),
  };
}

async function migrate(image: string, network: StartedNetwork): Promise<void> {
  const logs: string[] = [];
  const container = await new GenericContainer(image)
    .withNetwork(network)
    .withLabels(labels)
    .withEnvironment(COMMON_ENV)
    .withCommand(['migrate'])
    .withLogConsumer(keepLines(logs))
    .withWaitStrategy(Wait.forOneShotStartup())
    .withStartupTimeout(120_000)
    .start()
    .catch((error: Error) => {
      throw new Error(`postern migrate failed: ${error.message}\n${logs.join('\n')}`);
    });
  await container.stop({ remove: true });
}

export async function startTopology(image: string): Promise<Topology> {
  const network = await new Network().start();
  const started: StartedTestContainer[] = [];
  const resources: { pool?: pg.Pool; redisClient?: Redis; services: Service[] } = { services: [] };
  const stopAll = async () => {
    await resources.redisClient?.quit().catch(() => {});
    await resources.pool?.end().catch(() => {});
    const dir = path.join(REPO_ROOT, '.test-results', 'topology');
    mkdirSync(dir, { recursive: true });
    for (const service of resources.services) {
      writeFileSync(path.join(dir, `${service.name}.log`), await service.logs().catch((error: Error) => `docker logs failed: ${error.message}\n`));
    }
    await Promise.allSettled([...resources.services.map((service) => service.container), ...started].map((container) => container.stop({ remove: true })));
    await network.stop().catch(() => {});
  };
  try {
    const [postgres, redis, sink] = await Promise.all([
      startPostgres({ network, alias: 'postgres' }),
      startRedis({ network, alias: 'redis' }),
      startMaildev({ network, alias: 'sink' }),
    ]);
    started.push(postgres, redis, sink);
    resources.pool = new pg.Pool({ connectionString: `postgres://postern:postern@${postgres.getHost()}:${postgres.getPort()}/postern_admin`, max: 4 });
    resources.pool.on('error', () => {});
    resources.redisClient = new Redis(redis.getPort(), redis.getHost(), { maxRetriesPerRequest: 1 });
    resources.redisClient.on('error', () => {});

    await migrate(image, network);
    const specs: Array<[string, ServiceCommand, Record<string, string>]> = [
      ['mta-1', 'mta', { ...EDGE_ENV, MAIL_MTA_HOSTNAME: 'mx1.topology.test' }],
      ['mta-2', 'mta', { ...EDGE_ENV, MAIL_MTA_HOSTNAME: 'mx2.topology.test' }],
      ['core-1', 'core', ENGINE_ENV],
      ['core-2', 'core', ENGINE_ENV],
      ['api', 'api', {}],
    ];
    // Each is recorded as soon as it runs, so a failure of another still stops it.
    await Promise.all(
      specs.map(async ([name, command, env]) => {
        resources.services.push(await startService(image, network, name, command, env));
      }),
    );
    const byName = (name: string) => resources.services.find((service) => service.name === name) as Service;
    return {
      image,
      network,
      postgres,
      redis,
      sink,
      pool: resources.pool,
      redisClient: resources.redisClient,
      edges: [byName('mta-1'), byName('mta-2')],
      engines: [byName('core-1'), byName('core-2')],
      api: byName('api'),
      sinkApiUrl: () => `http://${sink.getHost()}:${sink.getMappedPort(MAILDEV_WEB_PORT)}`,
      services: () => specs.map(([name]) => byName(name)),
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** A sender facing two MX hosts of equal preference: each transaction goes to the next edge. */
export function bothEdges(topology: Topology): () => number {
  let turn = 0;
  return () => topology.edges[turn++ % 2]?.smtpPort() as number;
}

/** `postern token create` in the API's container, as an operator would run it; the token it prints. */
export async function createToken(topology: Topology, name: string): Promise<string> {
  const result = await topology.api.container.exec(['postern', 'token', 'create', '--name', name, '--scope', 'admin']);
  const token = result.stdout.trim().split('\n').pop() ?? '';
  if (result.exitCode !== 0 || !/^pst_/.test(token)) {
    throw new Error(`postern token create exited ${result.exitCode}: ${result.stdout}${result.stderr}`);
  }
  return token;
}

export interface StopResult {
  name: string;
  exitCode: number;
  oomKilled: boolean;
  ms: number;
}

/** `docker stop` with compose's grace period: how long the container took and how it ended. */
export async function dockerStop(service: Service): Promise<StopResult> {
  const id = service.container.getId();
  const t0 = Date.now();
  await run('docker', ['stop', '--time', String(STOP_GRACE_S), id]);
  const ms = Date.now() - t0;
  const { stdout } = await run('docker', ['inspect', '--format', '{{.State.ExitCode}} {{.State.OOMKilled}}', id]);
  const [exitCode, oomKilled] = stdout.trim().split(' ');
  return { name: service.name, exitCode: Number(exitCode), oomKilled: oomKilled === 'true', ms };
}

/** Starts a stopped or killed service again (docker restart), awaiting its /readyz. */
export async function startAgain(service: Service): Promise<void> {
  await service.container.restart({ timeout: STOP_GRACE_S * 1000 });
}

export interface HealthReport {
  /** Docker's view of the image's HEALTHCHECK: starting, healthy or unhealthy (or none). */
  status: string;
  /** The container's state (running, exited, ...) and its current run's start. */
  state: string;
  startedAt: string;
  failingStreak: number;
  /** The last probes Docker kept: when each started, how long it took, its exit code and output. */
  probes: string[];
}

interface DockerState {
  Status: string;
  StartedAt: string;
  Health?: { Status: string; FailingStreak: number; Log: Array<{ Start: string; End: string; ExitCode: number; Output: string }> | null };
}

/**
 * The image's HEALTHCHECK as Docker saw it, with the probes' own output (each names the /readyz
 * answer or why there was none), so a wait for "healthy" that runs out says why.
 */
export async function healthOf(service: Service): Promise<HealthReport> {
  const state = JSON.parse(await docker('inspect', '--format', '{{json .State}}', service.container.getId())) as DockerState;
  return {
    status: state.Health?.Status ?? 'no healthcheck',
    state: state.Status,
    startedAt: state.StartedAt,
    failingStreak: state.Health?.FailingStreak ?? 0,
    probes: (state.Health?.Log ?? []).map(
      (probe) =>
        `${probe.Start}: ${((Date.parse(probe.End) - Date.parse(probe.Start)) / 1000).toFixed(2)} s, exit ${probe.ExitCode}, ${probe.Output.trim().slice(0, 300)}`,
    ),
  };
}
