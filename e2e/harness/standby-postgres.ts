// A PostgreSQL primary and a streaming-replication standby of it, on a network of their own: what
// an endpoint meant to name the primary can name for a while (a failover's DNS, a proxy without a
// health check, an old primary rejoined as a replica). The standby is a pg_basebackup of the
// primary taken when it starts, replaying the primary's WAL from then on (hot standby: it answers
// reads, refuses writes).
import { PostgreSqlContainer, type StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import { GenericContainer, Network, type StartedNetwork, type StartedTestContainer, Wait } from 'testcontainers';
import { labels, readyWhenPgIsReady } from './containers.ts';
import { images } from './images.ts';

export interface PostgresStandbyPair {
  primary: StartedPostgreSqlContainer;
  standby: StartedTestContainer;
  /** host:port of each, as seen from the host. */
  primaryAddress: { host: string; port: number };
  standbyAddress: { host: string; port: number };
  /** DSN of a database on the primary, and the same on the standby. */
  dsn(database: string, on: 'primary' | 'standby'): string;
  close(): Promise<void>;
}

const USER = 'postern';
const PASSWORD = 'postern';
const PRIMARY_ALIAS = 'pg-primary';

// Run by the image's entrypoint once, at initdb: replication connections are their own database
// name in pg_hba.conf, which `all` does not match.
const ALLOW_REPLICATION = `printf '\\nhost replication all all scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"\n`;

// The standby: a base backup of the primary with its recovery settings (-R), then a server on it.
const STANDBY_SCRIPT = [
  'set -e',
  `export PGPASSWORD=${PASSWORD}`,
  `until pg_basebackup -h ${PRIMARY_ALIAS} -U ${USER} -D /tmp/standby -R -X stream; do rm -rf /tmp/standby; sleep 1; done`,
  'chmod 700 /tmp/standby',
  "exec postgres -D /tmp/standby -c listen_addresses='*' -c fsync=off -c max_connections=100",
].join('\n');

/** Starts the primary, lets `prepare` fill it (migrations, rows the standby should start with),
 *  then starts the standby from it. */
export async function startPostgresStandbyPair(prepare: (primaryDsn: (database: string) => string) => Promise<void>): Promise<PostgresStandbyPair> {
  const network: StartedNetwork = await new Network().start();
  const primary = await readyWhenPgIsReady(new PostgreSqlContainer(images.postgres), USER, 'postern_admin')
    .withLabels(labels)
    .withNetwork(network)
    .withNetworkAliases(PRIMARY_ALIAS)
    .withUsername(USER)
    .withPassword(PASSWORD)
    .withDatabase('postern_admin')
    .withCopyContentToContainer([{ content: ALLOW_REPLICATION, target: '/docker-entrypoint-initdb.d/allow-replication.sh', mode: 0o755 }])
    .withCommand(['postgres', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'max_connections=100'])
    .start();
  const primaryAddress = { host: primary.getHost(), port: primary.getPort() };
  const dsnAt = (address: { host: string; port: number }, database: string) =>
    `postgres://${USER}:${PASSWORD}@${address.host}:${address.port}/${database}`;
  let standby: StartedTestContainer | undefined;
  try {
    await prepare((database) => dsnAt(primaryAddress, database));
    standby = await new GenericContainer(images.postgres)
      .withLabels(labels)
      .withNetwork(network)
      .withUser('postgres')
      .withEntrypoint(['bash', '-c'])
      .withCommand([STANDBY_SCRIPT])
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept read-only connections/))
      .withStartupTimeout(120_000)
      .start();
  } catch (error) {
    await primary.stop({ remove: true, removeVolumes: true });
    await network.stop();
    throw error;
  }
  const started = standby;
  const standbyAddress = { host: started.getHost(), port: started.getMappedPort(5432) };
  return {
    primary,
    standby: started,
    primaryAddress,
    standbyAddress,
    dsn: (database, on) => dsnAt(on === 'primary' ? primaryAddress : standbyAddress, database),
    async close() {
      await started.stop({ remove: true, removeVolumes: true });
      await primary.stop({ remove: true, removeVolumes: true });
      await network.stop();
    },
  };
}
