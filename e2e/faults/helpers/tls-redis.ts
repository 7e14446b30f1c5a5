// A Redis that takes only TLS (`tls-port`, no plain port), with a server certificate of a test CA
// (e2e/harness/test-ca.ts) for 127.0.0.1, as managed Redis services run it, and ACL users made by
// the test (`ACL SETUSER` as an operator pastes it from docs/deploy.md). The test's own client is
// Redis's `default` user. No RDB, no AOF.
import { Redis, type RedisOptions } from 'ioredis';
import { GenericContainer, type StartedTestContainer, Wait } from 'testcontainers';
import { RUN_ID } from '../../harness/containers.ts';
import { images } from '../../harness/images.ts';
import { makeTestCa, type TestCa } from '../../harness/index.ts';

export interface TlsRedis {
  /** rediss://127.0.0.1:port, for MAIL_REDIS_MASTER_ADDR. */
  addr: string;
  ca: TestCa;
  /** Another CA, which did not issue the server's certificate. */
  otherCa: TestCa;
  /** The `default` user's client (everything allowed). */
  admin: Redis;
  /** A client over TLS trusting the test CA, as `username` with `password`; the caller disconnects it. */
  connect(username: string, password: string, extra?: Partial<RedisOptions>): Redis;
  close(): Promise<void>;
}

export async function startTlsRedis(): Promise<TlsRedis> {
  const ca = makeTestCa('Postern Redis test CA');
  const otherCa = makeTestCa('Another CA');
  const server = ca.issue('redis', ['127.0.0.1', 'localhost']);
  const container: StartedTestContainer = await new GenericContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withCopyContentToContainer([
      { content: server.cert, target: '/tls/server.crt', mode: 0o644 },
      { content: server.key, target: '/tls/server.key', mode: 0o644 },
    ])
    .withCommand([
      'redis-server', '--port', '0', '--tls-port', '6379', '--tls-cert-file', '/tls/server.crt', '--tls-key-file', '/tls/server.key',
      '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
    ])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start();
  const port = container.getMappedPort(6379);
  const connect = (username: string, password: string, extra: Partial<RedisOptions> = {}) => {
    const client = new Redis({
      host: '127.0.0.1',
      port,
      tls: { ca: ca.ca },
      username,
      password,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 100,
      commandTimeout: 5_000,
      connectTimeout: 5_000,
      ...extra,
    });
    client.on('error', () => {});
    return client;
  };
  const admin = new Redis({ host: '127.0.0.1', port, tls: { ca: ca.ca }, maxRetriesPerRequest: 1, commandTimeout: 5_000 });
  admin.on('error', () => {});
  return {
    addr: `rediss://127.0.0.1:${port}`,
    ca,
    otherCa,
    admin,
    connect,
    async close() {
      admin.disconnect();
      await container.stop({ remove: true, removeVolumes: true });
      ca.remove();
      otherCa.remove();
    },
  };
}
