// A Redis of the fault file's own (no RDB, no AOF: a restart comes back empty, as the cell wants),
// behind a TCP proxy so engines keep one address across the restart. The shared Redis is never
// used: its mail:delivery_commands belongs to the stream-intake suite.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { RUN_ID } from '../../harness/containers.ts';
import { images } from '../../harness/images.ts';
import { startTcpProxy, type TcpProxy, waitFor } from '../../harness/index.ts';

const run = promisify(execFile);
/** A docker command that has not returned by then is killed and fails the test with its error. */
const DOCKER_DEADLINE = { timeout: 60_000 };

export interface FaultRedis {
  /** host:port through the proxy, for MAIL_REDIS_MASTER_ADDR. */
  addr: string;
  client: Redis;
  /** docker stop + start: everything in it is gone; resolves when the new server answers, with the
   *  time (epoch ms) the old server was stopped and cut off: an XADD acknowledged up to then was
   *  acknowledged by the old server, one acknowledged later by the new one. */
  restartEmpty(): Promise<{ oldServerGoneAt: number }>;
  close(): Promise<void>;
}

async function mappedPort(id: string): Promise<number> {
  const { stdout } = await run('docker', ['port', id, '6379/tcp'], DOCKER_DEADLINE);
  return Number(/:(\d+)\s*$/m.exec(stdout.trim().split('\n')[0] ?? '')?.[1]);
}

/** `serverArgs` come after the defaults, and Redis takes the last of a setting given twice
 *  (`--appendonly yes` keeps an AOF: then restartEmpty() is not empty). */
export async function startFaultRedis(options: { serverArgs?: string[] } = {}): Promise<FaultRedis> {
  const container: StartedRedisContainer = await new RedisContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withCommand(['redis-server', '--save', '', '--appendonly', 'no', ...(options.serverArgs ?? [])])
    .start();
  const proxy: TcpProxy = await startTcpProxy(container.getHost(), container.getPort());
  // Every command of the test's own client (the producer's XADDs, the restart's probe) fails after
  // 2 s instead of waiting on a connection that went dead with the restart: the producer then
  // retries, and a test that cannot reach Redis says so rather than running into its timeout.
  const client = new Redis({ host: proxy.host, port: proxy.port, maxRetriesPerRequest: 1, retryStrategy: () => 100, commandTimeout: 2_000, connectTimeout: 2_000 });
  client.on('error', () => {});
  return {
    addr: `${proxy.host}:${proxy.port}`,
    client,
    async restartEmpty() {
      // The server's run_id tells the restarted process from the old one. Emptiness cannot be
      // awaited: producers and engines write to the new server as soon as it answers.
      const runId = async () => /run_id:(\w+)/.exec(await client.info('server'))?.[1] ?? '';
      const before = await runId();
      await run('docker', ['stop', '--time', '2', container.getId()], DOCKER_DEADLINE);
      proxy.cutConnections();
      const oldServerGoneAt = Date.now();
      await run('docker', ['start', container.getId()], DOCKER_DEADLINE);
      // `docker port` may answer before the restarted container's port is published again.
      const port = await waitFor('the restarted container\'s mapped port', () => mappedPort(container.getId()), Number.isInteger, { timeoutMs: 30_000, intervalMs: 100 });
      proxy.retarget(container.getHost(), port);
      await waitFor('the restarted Redis to answer', runId, (id) => id !== '' && id !== before, { timeoutMs: 30_000, intervalMs: 100 });
      return { oldServerGoneAt };
    },
    async close() {
      client.disconnect();
      await proxy.close();
      await container.stop({ remove: true, removeVolumes: true });
    },
  };
}
