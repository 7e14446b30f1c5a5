// Redis connections for the command stream. Redis is an intake channel, never on the path of an
// acknowledged message, so its loss is waited out: reconnect forever with capped backoff, and fail
// commands at once while disconnected (no unbounded offline queue growing in memory). A connection
// that stays open but answers nothing (a peer gone without a FIN or RST: a NAT or firewall that
// dropped the flow, a host that vanished) is dropped after DEAD_SOCKET_MS of silence while a
// command waits, and made again: otherwise a command on it would never return, and the stream
// consumer, restarted by the watchdog, would queue its next read behind the dead one (and the
// notifications of new entries would stop without a word).
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisEndpoint } from '../config/parse-values.ts';
import { childLogger } from '../logging/child-logger.ts';

export type { Redis };

export interface RedisOptions {
  endpoint: RedisEndpoint;
  /** The ACL user (MAIL_REDIS_USERNAME); unset: Redis's `default` user. */
  username?: string | undefined;
  password?: string | undefined;
  /** PEM file of the CAs a rediss:// server's certificate must chain to (MAIL_REDIS_TLS_CA). */
  tlsCaFile?: string | undefined;
  sentinelPassword?: string | undefined;
  name: string;
  logger: Logger;
  /** Per-command timeout for the command connection (the stream reads too: they do not block). */
  commandTimeoutMs?: number;
  /** Silence (ms) while a command waits after which a connection counts as dead; DEAD_SOCKET_MS unless set (tests). */
  deadSocketMs?: number;
}

/** Longer than any command takes on a live Redis (the engine's stream reads do not block:
 *  apps/core/src/intake/stream-read.ts). */
export const DEAD_SOCKET_MS = 15_000;

export interface RedisConnections {
  /** XADD, XACK, the stream reads, PING: short commands. */
  commands: Redis;
  /** SUBSCRIBE only: where Redis tells of new stream entries (apps/core/src/intake/stream-doorbell.ts).
   *  RESP2, because ioredis drops the RESP3 pushes client tracking sends; not resubscribed by
   *  ioredis, because the subscriber makes itself known by its new client id first. */
  notifications: Redis;
  /** What the command connection last failed with while it was not ready (a refused TLS
   *  certificate, a refused login), or null: what a command meanwhile fails with ("Stream isn't
   *  writeable") does not say why. */
  connectionError(): Error | null;
  close(): Promise<void>;
}

/** How long after ioredis ended a connection it is made again. */
const CONNECT_AGAIN_MS = 1_000;

/** TLS for a rediss:// endpoint: the server's certificate is verified, for its host name too,
 *  against MAIL_REDIS_TLS_CA when given, else Node's CAs (NODE_EXTRA_CA_CERTS added). Read once,
 *  at start: a file that cannot be read stops the start, by name. */
function tlsOptions(options: RedisOptions): ConnectionOptions | undefined {
  if (options.endpoint.kind !== 'direct' || !options.endpoint.tls) return undefined;
  if (options.tlsCaFile === undefined) return {};
  try {
    return { ca: readFileSync(options.tlsCaFile) };
  } catch (error) {
    throw new Error(`MAIL_REDIS_TLS_CA: cannot read ${options.tlsCaFile}: ${(error as Error).message}`);
  }
}

function connect(
  options: RedisOptions,
  role: 'commands' | 'notifications',
  closing: () => boolean,
  tls: ConnectionOptions | undefined,
  failed: (error: Error | null) => void = () => {},
): Redis {
  const log = childLogger(options.logger, { component: 'redis', role });
  const where =
    options.endpoint.kind === 'direct'
      ? { host: options.endpoint.addr.host, port: options.endpoint.addr.port, ...(tls ? { tls } : {}) }
      : {
          // The master is whatever the Sentinels name now; after a failover the connection is
          // dropped (failoverDetector) and made again to the new master.
          sentinels: options.endpoint.sentinels,
          name: options.endpoint.masterName,
          role: 'master' as const,
          sentinelPassword: options.sentinelPassword,
          failoverDetector: true,
        };
  const client = new Redis({
    ...where,
    username: options.username,
    password: options.password,
    connectionName: `${options.name}:${role}`,
    // No CLIENT SETINFO: Redis 7.0 has none, so an ACL line granting it cannot be written for
    // both 7.0 and later, and it is one permission less (docs/deploy.md, A Redis user for the engines).
    disableClientInfo: true,
    connectTimeout: 5_000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    ...(role === 'commands' ? { commandTimeout: options.commandTimeoutMs ?? 5_000 } : { protocol: 2 as const, autoResubscribe: false }),
    // ioredis destroys the socket after this long without a byte while commands wait (the pending
    // ones fail) and reconnects; a subscribed connection is PINGed while it is waited on for this.
    socketTimeout: options.deadSocketMs ?? DEAD_SOCKET_MS,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5_000),
    // A failover replica answers READONLY: reconnect to find the new master.
    reconnectOnError: (error) => error.message.startsWith('READONLY'),
    lazyConnect: false,
  });
  let wasReady = false;
  /** The master this connection was last made to ("ip:port"), behind Sentinel. */
  let master: string | null = null;
  client.on('ready', () => {
    wasReady = true;
    failed(null);
    if (options.endpoint.kind === 'direct') {
      log.info('connected');
      return;
    }
    const now = `${client.stream?.remoteAddress ?? '?'}:${client.stream?.remotePort ?? '?'}`;
    const before = master;
    master = now;
    if (before === null || before === now) log.info({ master: now }, 'connected');
    else if (role === 'notifications') log.info({ master: now, previousMaster: before }, 'connected to another master');
    // Said once per engine (by the command connection): a failover is the one moment Redis may
    // have dropped commands it acknowledged — those the old master took and never passed on —
    // and no engine can count them (docs/deploy.md, Redis with Sentinel).
    else log.warn({ master: now, previousMaster: before }, 'Redis master changed (Sentinel failover): XADDs the old master acknowledged and had not replicated are lost unless producers confirmed them with WAIT');
  });
  client.on('error', (error) => {
    if (client.status !== 'ready') failed(error);
    log.warn({ err: error }, 'Redis connection error');
  });
  // ioredis ends a connection for good (status "end", no retry) when its Sentinel connector is
  // dropped in the middle of a reconnect (`Connection is closed.` from then on): seen with producers
  // through a failover under load. An engine's connection left so would stop reading the stream
  // until a restart, so whatever ended it other than close() it is made again.
  client.on('end', () => {
    if (closing()) return;
    if (wasReady) log.warn({ connectAgainInMs: CONNECT_AGAIN_MS }, 'Redis connection closed');
    const again = setTimeout(() => {
      if (closing() || client.status !== 'end') return;
      client.connect().catch((error: unknown) => log.warn({ err: error }, 'Redis connection could not be made again; ioredis retries it'));
    }, CONNECT_AGAIN_MS);
    again.unref();
  });
  return client;
}

export function createRedisConnections(options: RedisOptions): RedisConnections {
  let closed = false;
  const closing = () => closed;
  const tls = tlsOptions(options);
  let lastConnectionError: Error | null = null;
  const commands = connect(options, 'commands', closing, tls, (error) => {
    lastConnectionError = error;
  });
  const notifications = connect(options, 'notifications', closing, tls);
  return {
    commands,
    notifications,
    connectionError: () => lastConnectionError,
    async close() {
      closed = true;
      await Promise.allSettled([commands.quit(), notifications.quit()]);
      commands.disconnect();
      notifications.disconnect();
    },
  };
}
