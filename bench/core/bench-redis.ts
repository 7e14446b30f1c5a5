// The Redis of the stream intake bench: BENCH_REDIS_URL (redis://[:password@]host:port) when given,
// otherwise a redis-server of its own (/usr/bin/redis-server, or BENCH_REDIS_SERVER) on a free port
// of 127.0.0.1, in a temporary directory, with no persistence at all (no RDB snapshots, no AOF):
// the bench measures the engine, not Redis's disk, and leaves nothing behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface BenchRedis {
  /** host:port, as MAIL_REDIS_MASTER_ADDR. */
  addr: string;
  password: string | undefined;
  describe: string;
  connect(): Redis;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A connection's errors reach the bench through the commands that fail (the run stops); the
 *  connection's own 'error' events, while it reconnects, would only be printed again. */
function quiet(redis: Redis): Redis {
  redis.on('error', () => {});
  return redis;
}

async function answersPing(redis: Redis, what: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await redis.ping();
      return String((await redis.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?');
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what} did not answer PING within 10 s: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

export async function startBenchRedis(url: string | undefined, server = '/usr/bin/redis-server'): Promise<BenchRedis> {
  if (url) {
    const parsed = new URL(url);
    const addr = `${parsed.hostname}:${parsed.port || '6379'}`;
    const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
    const connect = () => quiet(new Redis({ host: parsed.hostname, port: Number(parsed.port || 6379), password, maxRetriesPerRequest: 1 }));
    const probe = connect();
    const version = await answersPing(probe, addr).finally(() => probe.disconnect());
    return { addr, password, describe: `Redis ${version} at ${addr} (BENCH_REDIS_URL)`, connect, stop: async () => {} };
  }
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postern-bench-redis-'));
  const child: ChildProcess = spawn(server, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const connect = () => quiet(new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 }));
  const probe = connect();
  const version = await answersPing(probe, `${server} on port ${port}`).finally(() => probe.disconnect());
  return {
    addr: `127.0.0.1:${port}`,
    password: undefined,
    describe: `Redis ${version}, started by the bench (pid ${child.pid}, 127.0.0.1:${port}, no persistence)`,
    connect,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
