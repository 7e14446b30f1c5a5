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

export interface FaultRedis {
  /** host:port through the proxy, for MAIL_REDIS_MASTER_ADDR. */
  addr: string;
  client: Redis;
  /** docker stop + start: everything in it is gone; resolves when the new server answers. */
  restartEmpty(): Promise<void>;
  close(): Promise<void>;
}

async function mappedPort(id: string): Promise<number> {
  const { stdout } = await run('docker', ['port', id, '6379/tcp']);
  return Number(/:(\d+)\s*$/m.exec(stdout.trim().split('\n')[0] ?? '')?.[1]);
}

export async function startFaultRedis(): Promise<FaultRedis> {
  const container: StartedRedisContainer = await new RedisContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withCommand(['redis-server', '--save', '', '--appendonly', 'no'])
    .start();
  const proxy: TcpProxy = await startTcpProxy(container.getHost(), container.getPort());
  const client = new Redis({ host: proxy.host, port: proxy.port, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  client.on('error', () => {});
  return {
    addr: `${proxy.host}:${proxy.port}`,
    client,
    async restartEmpty() {
      // The server's run_id tells the restarted process from the old one. Emptiness cannot be
      // awaited: producers and engines write to the new server as soon as it answers.
      const runId = async () => /run_id:(\w+)/.exec(await client.info('server'))?.[1] ?? '';
      const before = await runId();
      await run('docker', ['stop', '--time', '2', container.getId()]);
      proxy.cutConnections();
      await run('docker', ['start', container.getId()]);
      proxy.retarget(container.getHost(), await mappedPort(container.getId()));
      await waitFor('the restarted Redis to answer', runId, (id) => id !== '' && id !== before, { timeoutMs: 30_000, intervalMs: 100 });
    },
    async close() {
      client.disconnect();
      await proxy.close();
      await container.stop({ remove: true, removeVolumes: true });
    },
  };
}
