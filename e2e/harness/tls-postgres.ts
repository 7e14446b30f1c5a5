// A PostgreSQL that takes only TLS connections, as managed services do: `ssl = on` with a server
// certificate a test CA issued (test-ca.ts), and a pg_hba.conf of `hostssl` lines only, so a
// connection without TLS is refused by the server itself ("no encryption"). The processes under
// test reach it through a TCP proxy at 127.0.0.1, the name its certificate holds; the server can
// be switched to another certificate for the same key (its file written over, then a reload,
// which new connections take up): one of another CA (a renewal by a CA the DSN does not name, a
// managed provider's CA rotation) or one for another host name.

import { createLogger, runMigrations } from '@postern/shared';
import { PostgreSqlContainer, type StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import pg from 'pg';
import { labels } from './containers.ts';
import { images } from './images.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
import { makeTestCa, type TestCa } from './test-ca.ts';
import { waitFor } from './wait-for.ts';

/** What the server can present: its own certificate, one of another CA, one for another host. */
export type PresentedCertificate = 'trusted' | 'untrusted-ca' | 'wrong-host';

/** Where each certificate waits in the container. */
const CERTIFICATES: Record<PresentedCertificate, string> = {
  trusted: '/etc/postern-tls/trusted.crt',
  'untrusted-ca': '/etc/postern-tls/untrusted-ca.crt',
  'wrong-host': '/etc/postern-tls/wrong-host.crt',
};

/** The file ssl_cert_file names (set on the command line by withSSL, which ALTER SYSTEM cannot override). */
const SERVED_CERTIFICATE = '/tmp/testcontainers-node/postgres/server.crt';

// Run once by the image's entrypoint at initdb: the socket stays trusted (the entrypoint's own
// setup), every TCP client must use TLS.
const HOSTSSL_ONLY = `cat > "$PGDATA/pg_hba.conf" <<'HBA'
local all all trust
hostssl all all all scram-sha-256
HBA
`;

export interface TlsPostgres {
  /** The CA that issued the server's certificate, and another one. */
  ca: TestCa;
  otherCa: TestCa;
  /** A DSN through the proxy (host 127.0.0.1) with `query` after its `?`. */
  dsn(query: string): string;
  /** Straight to the container, TLS without verification: the test's own, whatever is presented. */
  adminDsn: string;
  proxy: TcpProxy;
  container: StartedPostgreSqlContainer;
  /** Presents `which` to new connections from now on and cuts the open ones (which keep the
   *  certificate they were made with), once a new connection is seen to get it. */
  present(which: PresentedCertificate): Promise<void>;
  close(): Promise<void>;
}

/** How a client that trusts `ca` fares with a new connection: 'ok' or the refusal's code. */
async function verifiedConnect(dsn: string): Promise<string> {
  const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.end();
    return 'ok';
  } catch (error) {
    // Not awaited: end() of a client whose TLS handshake was refused never settles (pg 8.23).
    client.end().catch(() => {});
    return String((error as { code?: string }).code ?? (error as Error).message);
  }
}

const EXPECTED: Record<PresentedCertificate, string> = {
  trusted: 'ok',
  'untrusted-ca': 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'wrong-host': 'ERR_TLS_CERT_ALTNAME_INVALID',
};

export async function startTlsPostgres(): Promise<TlsPostgres> {
  const ca = makeTestCa('Postern test CA');
  const otherCa = makeTestCa('Another CA');
  const server = ca.issue('postgres', ['127.0.0.1', 'localhost']);
  const untrusted = otherCa.issue('postgres', ['127.0.0.1', 'localhost'], server.keyFile);
  const wrongHost = ca.issue('db.postern.test', ['db.postern.test'], server.keyFile);
  const container = await new PostgreSqlContainer(images.postgres)
    .withLabels(labels)
    .withUsername('postern')
    .withPassword('postern')
    .withDatabase('postern_admin')
    .withSSL(server.certFile, server.keyFile)
    .withCopyContentToContainer([
      { content: HOSTSSL_ONLY, target: '/docker-entrypoint-initdb.d/hostssl-only.sh', mode: 0o755 },
      { content: server.cert, target: CERTIFICATES.trusted, mode: 0o644 },
      { content: untrusted.cert, target: CERTIFICATES['untrusted-ca'], mode: 0o644 },
      { content: wrongHost.cert, target: CERTIFICATES['wrong-host'], mode: 0o644 },
    ])
    // TCP answers only once the entrypoint's setup is done; without TLS the probe costs no
    // handshake (over a second on a loaded machine, past the default probe's 1 s), and the
    // server's "no encryption" refusal still says it is up.
    .withHealthCheck({
      test: ['CMD-SHELL', 'PGSSLMODE=disable pg_isready --host localhost --username postern --dbname postern_admin'],
      interval: 500,
      timeout: 10_000,
      retries: 1000,
    })
    .withStartupTimeout(240_000)
    .withCommand(['postgres', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'])
    .start();
  const proxy = await startTcpProxy(container.getHost(), container.getPort());
  const dsn = (query: string) => `postgres://postern:postern@127.0.0.1:${proxy.port}/postern_admin?${query}`;
  const adminDsn = `postgres://postern:postern@${container.getHost()}:${container.getPort()}/postern_admin?sslmode=no-verify`;
  await runMigrations({ dsn: adminDsn, logger: createLogger('e2e-tls-pg', 'warn') });
  return {
    ca,
    otherCa,
    dsn,
    adminDsn,
    proxy,
    container,
    async present(which) {
      // Written over in place (its owner and mode stay the server's), then reloaded, as a renewal is.
      const copied = await container.exec(['cp', CERTIFICATES[which], SERVED_CERTIFICATE]);
      if (copied.exitCode !== 0) throw new Error(`cp ${CERTIFICATES[which]}: ${copied.output}`);
      const admin = new pg.Client({ connectionString: adminDsn });
      await admin.connect();
      try {
        await admin.query('SELECT pg_reload_conf()');
      } finally {
        await admin.end();
      }
      const probe = dsn(`sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.caFile)}`);
      await waitFor(`new connections to be presented the ${which} certificate`, () => verifiedConnect(probe), (got) => got === EXPECTED[which], { timeoutMs: 30_000, intervalMs: 200 });
      proxy.cutConnections();
    },
    async close() {
      await proxy.close();
      await container.stop({ remove: true, removeVolumes: true });
      ca.remove();
      otherCa.remove();
    },
  };
}
