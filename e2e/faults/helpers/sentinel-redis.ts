// Redis behind Sentinel, in real containers on a network of their own: a master (redis-a), a replica
// (redis-b) and one Sentinel (quorum 1, a node is down after 1 s). No RDB, no AOF: a node killed
// and started again comes back empty, and Sentinel makes it a replica of whoever is master then.
// Failovers are Sentinel's own: SENTINEL FAILOVER (graceful), or the master killed (docker kill)
// and the replica promoted. The shared Redis is never used.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { GenericContainer, Network, type StartedNetwork, type StartedTestContainer, Wait } from 'testcontainers';
import { RUN_ID } from '../../harness/containers.ts';
import { images } from '../../harness/images.ts';
import { waitFor } from '../../harness/index.ts';

const run = promisify(execFile);
const DOCKER_DEADLINE = { timeout: 60_000 };
export const SENTINEL_MASTER_NAME = 'postern';

export interface SentinelRedis {
  /** sentinel://host:port/name, for MAIL_REDIS_MASTER_ADDR. */
  addr: string;
  /** A producer's client: it asks the Sentinel for the master, as a real producer would; a
   *  command on a connection gone dead fails after 2 s (and is retried by the producer). */
  client: Redis;
  /** A new client through the Sentinel (the caller disconnects it). */
  connect(extra?: Partial<RedisOptions>): Redis;
  /** The master as the Sentinel names it now: "ip:port". */
  currentMaster(): Promise<string>;
  /** The node (container) at "ip:port" on the network. */
  nodeAt(addr: string): Promise<StartedTestContainer>;
  /** SENTINEL FAILOVER, resolved once the Sentinel names another master and the old one is its
   *  replica (until then the old master took writes). */
  failover(): Promise<{ from: string; to: string }>;
  /** Resolves once every node that is up and not the master is its replica, in sync. */
  replicasInSync(): Promise<void>;
  /** CONFIG SET on every node that is up (a replica keeps it for when it is promoted). */
  configSetAll(name: string, value: string): Promise<void>;
  /** docker kill of the master, resolved once the Sentinel names another master. */
  killMaster(): Promise<{ from: string; to: string }>;
  /** docker start of a killed node, resolved once it is up (empty: no persistence). */
  restart(node: StartedTestContainer): Promise<void>;
  /** Nodes killed and not started again. */
  deadNodes(): StartedTestContainer[];
  /** The node's address on the network (docker inspect: a node started again may get another). */
  ipOf(node: StartedTestContainer): Promise<string>;
  /** The names of the clients connected to the node at "ip:port" (CLIENT LIST). */
  clientNames(addr: string): Promise<string[]>;
  /** INFO replication of the node at "ip:port", as fields. */
  replication(addr: string): Promise<Record<string, string>>;
  close(): Promise<void>;
}

function redisNode(network: StartedNetwork, name: string, args: string[] = []): GenericContainer {
  return new GenericContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withNetwork(network)
    .withNetworkAliases(name)
    .withCommand(['redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...args])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/));
}

/** One command on the node at "ip:port" itself, not through the Sentinel. */
async function onNode<T>(addr: string, command: (probe: Redis) => Promise<T>): Promise<T> {
  const [host, port] = addr.split(':');
  const probe = new Redis({ host, port: Number(port), lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return await command(probe);
  } finally {
    probe.disconnect();
  }
}

export async function startSentinelRedis(): Promise<SentinelRedis> {
  const network = await new Network().start();
  const master = await redisNode(network, 'redis-a').start();
  const masterIp = master.getIpAddress(network.getName());
  const replica = await redisNode(network, 'redis-b', ['--replicaof', masterIp, '6379']).start();
  // A replica still in its first sync promoted by a failover would take an empty stream with it.
  await waitFor('the replica in sync', () => onNode(`${replica.getIpAddress(network.getName())}:6379`, (probe) => probe.info('replication')), (info) => info.includes('master_link_status:up'), {
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  const nodes = [master, replica];
  const dead = new Set<StartedTestContainer>();
  const config = [
    'port 26379',
    `sentinel monitor ${SENTINEL_MASTER_NAME} ${masterIp} 6379 1`,
    `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
    `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 5000`,
    '',
  ].join('\n');
  const sentinel = await new GenericContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withNetwork(network)
    .withCopyContentToContainer([{ content: config, target: '/tmp/sentinel.conf', mode: 0o666 }])
    .withCommand(['redis-server', '/tmp/sentinel.conf', '--sentinel'])
    .withExposedPorts(26379)
    .withWaitStrategy(Wait.forLogMessage(/\+monitor master/))
    .start();
  const sentinelAddr = { host: sentinel.getHost(), port: sentinel.getMappedPort(26379) };
  let closing = false;
  const connect = (extra: Partial<RedisOptions> = {}) => {
    const client = new Redis({
      sentinels: [sentinelAddr],
      name: SENTINEL_MASTER_NAME,
      role: 'master',
      failoverDetector: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 100,
      reconnectOnError: (error) => error.message.startsWith('READONLY'),
      commandTimeout: 2_000,
      connectTimeout: 2_000,
      ...extra,
    });
    client.on('error', () => {});
    // ioredis (6.0) ends a Sentinel client for good when its failover detector drops the connector
    // while a reconnect is resolving the master ("Connection is closed."): seen after a killed
    // master. A producer must make it connect again, as this one does, or it writes nothing more.
    client.on('end', () => {
      if (!closing) setTimeout(() => client.connect().catch(() => {}), 100);
    });
    return client;
  };
  const client = connect();
  const currentMaster = async () => {
    const probe = new Redis({ ...sentinelAddr, lazyConnect: true });
    try {
      await probe.connect();
      const [ip, port] = (await probe.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_MASTER_NAME)) as [string, string];
      return `${ip}:${port}`;
    } finally {
      probe.disconnect();
    }
  };
  const ipOf = async (node: StartedTestContainer) => {
    const format = `{{(index .NetworkSettings.Networks "${network.getName()}").IPAddress}}`;
    const { stdout } = await run('docker', ['inspect', '--format', format, node.getId()], DOCKER_DEADLINE);
    return stdout.trim();
  };
  const nodeAt = async (addr: string) => {
    const ips = await Promise.all(nodes.map(ipOf));
    const node = nodes[ips.findIndex((ip) => `${ip}:6379` === addr)];
    if (!node) throw new Error(`no node at ${addr}`);
    return node;
  };
  const anotherMaster = (from: string) =>
    waitFor('the Sentinel to name another master', currentMaster, (now) => now !== from, { timeoutMs: 30_000, intervalMs: 100 });
  return {
    addr: `sentinel://${sentinelAddr.host}:${sentinelAddr.port}/${SENTINEL_MASTER_NAME}`,
    client,
    connect,
    currentMaster,
    nodeAt,
    async failover() {
      const from = await currentMaster();
      const probe = new Redis(sentinelAddr);
      try {
        await probe.call('SENTINEL', 'failover', SENTINEL_MASTER_NAME);
      } finally {
        probe.disconnect();
      }
      const to = await anotherMaster(from);
      await waitFor('the old master a replica', () => onNode(from, (node) => node.info('replication')), (info) => info.includes('role:slave'), {
        timeoutMs: 30_000,
        intervalMs: 20,
      });
      return { from, to };
    },
    async replicasInSync() {
      const master = await currentMaster();
      const live = await Promise.all(nodes.filter((node) => !dead.has(node)).map(async (node) => `${await ipOf(node)}:6379`));
      for (const addr of live.filter((candidate) => candidate !== master)) {
        await waitFor(`${addr} in sync with ${master}`, () => onNode(addr, (probe) => probe.info('replication')), (info) => info.includes('master_link_status:up'), {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
      }
    },
    async configSetAll(name, value) {
      const live = nodes.filter((node) => !dead.has(node));
      await Promise.all(live.map(async (node) => onNode(`${await ipOf(node)}:6379`, (probe) => probe.config('SET', name, value))));
    },
    async killMaster() {
      const from = await currentMaster();
      const node = await nodeAt(from);
      await run('docker', ['kill', node.getId()], DOCKER_DEADLINE);
      dead.add(node);
      return { from, to: await anotherMaster(from) };
    },
    async restart(node) {
      await run('docker', ['start', node.getId()], DOCKER_DEADLINE);
      dead.delete(node);
      const ip = await ipOf(node);
      await waitFor('the restarted node to answer', () => onNode(`${ip}:6379`, (probe) => probe.ping()).then(() => true, () => false), Boolean, {
        timeoutMs: 30_000,
        intervalMs: 200,
      });
    },
    deadNodes: () => [...dead],
    ipOf,
    async clientNames(addr) {
      const list = (await onNode(addr, (probe) => probe.client('LIST'))) as string;
      return list.split('\n').flatMap((line) => /\bname=(\S*)/.exec(line)?.[1] ?? []);
    },
    async replication(addr) {
      const text = await onNode(addr, (probe) => probe.info('replication'));
      return Object.fromEntries(text.split('\r\n').flatMap((line) => (line.includes(':') ? [line.split(':', 2) as [string, string]] : [])));
    },
    async close() {
      closing = true;
      client.disconnect();
      for (const container of [sentinel, replica, master]) await container.stop({ remove: true, removeVolumes: true });
      await network.stop();
    },
  };
}
