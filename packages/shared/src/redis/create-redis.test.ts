// A Redis connection that stays open and goes silent (the peer vanished without a FIN or RST) is
// dropped and made again, against a scripted RESP server on a loopback socket that can stop
// answering the connections it has.
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../logging/logger.ts';
import { createRedisConnections, type RedisConnections } from './create-redis.ts';

interface FakeRedis {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Stop answering every connection open now (new ones are answered). */
  silenceOpenConnections(): void;
  close(): Promise<void>;
}

/** Enough of RESP for ioredis's handshake and PING. */
async function fakeRedis(): Promise<FakeRedis> {
  const sockets = new Set<net.Socket>();
  const silent = new WeakSet<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const parsed = parseCommand(buffered);
        if (!parsed) return;
        buffered = buffered.slice(parsed.length);
        if (silent.has(socket)) continue;
        const [name = ''] = parsed.args;
        const verb = name.toUpperCase();
        if (verb === 'INFO') {
          const info = '# Server\r\nredis_version:7.0.0\r\nloading:0\r\n';
          socket.write(`$${info.length}\r\n${info}\r\n`);
        } else if (verb === 'PING') socket.write('+PONG\r\n');
        else socket.write('+OK\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    silenceOpenConnections() {
      for (const socket of sockets) silent.add(socket);
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** One RESP array of bulk strings at the start of `text`, or null while incomplete. */
function parseCommand(text: string): { args: string[]; length: number } | null {
  const header = /^\*(\d+)\r\n/.exec(text);
  if (!header) return null;
  let offset = header[0].length;
  const args: string[] = [];
  for (let i = 0; i < Number(header[1]); i++) {
    const bulk = /^\$(\d+)\r\n/.exec(text.slice(offset));
    if (!bulk) return null;
    const start = offset + bulk[0].length;
    const end = start + Number(bulk[1]);
    if (text.length < end + 2) return null;
    args.push(text.slice(start, end));
    offset = end + 2;
  }
  return { args, length: offset };
}

let server: FakeRedis | null = null;
let redis: RedisConnections | null = null;

afterEach(async () => {
  await redis?.close();
  await server?.close();
  redis = null;
  server = null;
});

async function ready(connections: RedisConnections): Promise<void> {
  for (const client of [connections.commands, connections.notifications]) {
    if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve));
  }
}

describe('createRedisConnections', () => {
  it('drops a connection that answers nothing while a command waits on it, and carries on on a new one', async () => {
    server = await fakeRedis();
    redis = createRedisConnections({
      endpoint: { kind: 'direct', addr: { host: '127.0.0.1', port: server.port }, tls: false },
      name: 'dead-socket-test',
      logger: createLogger('create-redis-test', 'silent'),
      deadSocketMs: 300,
    });
    await ready(redis);
    // The notifications connection is PINGed while it is waited on (stream-doorbell.ts).
    const ping = () => redis?.notifications.ping();
    expect(await ping()).toBe('PONG');
    const before = server.accepted();

    server.silenceOpenConnections();
    const t0 = performance.now();
    // Each connection is dropped after the silence and what waited on it fails (ioredis retries
    // nothing here): a PING on either connection.
    await expect(ping()).rejects.toThrow();
    await expect(redis.commands.ping()).rejects.toThrow();
    // Dropped after the silence, not after a kernel's keepalive (hours) or never.
    expect(performance.now() - t0).toBeLessThan(2_000);

    const connected = redis;
    await vi.waitFor(() => expect(server?.accepted()).toBeGreaterThanOrEqual(before + 2), { timeout: 5_000 });
    await vi.waitFor(() => expect([connected.commands.status, connected.notifications.status]).toEqual(['ready', 'ready']), { timeout: 5_000 });
    expect(await ping()).toBe('PONG');
    expect(await redis.commands.ping()).toBe('PONG');
  });

  it('makes a connection again that ioredis ended for good, as its Sentinel connector does when dropped mid-reconnect', async () => {
    server = await fakeRedis();
    redis = createRedisConnections({
      endpoint: { kind: 'direct', addr: { host: '127.0.0.1', port: server.port }, tls: false },
      name: 'ended-test',
      logger: createLogger('create-redis-test', 'silent'),
    });
    await ready(redis);
    // Status "end": ioredis makes no new connection by itself from here.
    const ended = Promise.all([redis.commands, redis.notifications].map((client) => new Promise((resolve) => client.once('end', resolve))));
    redis.commands.disconnect();
    redis.notifications.disconnect();
    await ended;
    const connected = redis;
    await vi.waitFor(() => expect([connected.commands.status, connected.notifications.status]).toEqual(['ready', 'ready']), { timeout: 5_000 });
    expect(await redis.commands.ping()).toBe('PONG');
  });

  it('leaves closed what close() closed', async () => {
    server = await fakeRedis();
    const connections = createRedisConnections({
      endpoint: { kind: 'direct', addr: { host: '127.0.0.1', port: server.port }, tls: false },
      name: 'closed-test',
      logger: createLogger('create-redis-test', 'silent'),
    });
    await ready(connections);
    const before = server.accepted();
    await connections.close();
    // Longer than the delay before a connection ended otherwise is made again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(server.accepted()).toBe(before);
    expect(connections.commands.status).toBe('end');
  });
});
