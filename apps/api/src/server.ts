// The API as a value: startApi() opens the pool, loads the template catalog (sendEmail checks
// commands against it, as the engine's stream intake does), checks that MAIL_SECRETS_KEY opens the
// stored DKIM keys (keys it creates must open in the engine too), and serves /graphql plus
// /healthz, /readyz and /metrics on config.http.api. Its /metrics carries the queue gauges too
// (mail_attempt_schedule_*, sampled in the background), so due work nobody claims is seen while
// every engine is down (packages/shared/src/metrics/queue-gauges.ts). main.ts calls it once; tests call it on port 0.
import {
  checkSecretsAtStart,
  childLogger,
  createMetricsRegistry,
  createPool,
  exportQueueGauges,
  type ListenAddress,
  type Logger,
  loadTemplateCatalog,
  openDatabaseReadinessProbe,
  type PosternConfig,
  type Registry,
  startOpsServer,
  type TemplateCatalog,
} from '@postern/shared';
import { createTokenLookups } from './auth/token-lookups.ts';
import { createApiYoga } from './http/create-yoga.ts';
import { graphqlRoute } from './http/graphql-route.ts';
import { createApiMetrics } from './http/operation-metrics.ts';
import { createSendEmailIntake } from './operations/send-email-intake.ts';

export interface ApiDeps {
  logger: Logger;
  registry?: Registry;
  /** Defaults to the catalog in config.templateDir, read once now. */
  catalog?: TemplateCatalog;
  /** Default: on unless MAIL_ENV=production. */
  introspection?: boolean;
  /** Default: on unless MAIL_ENV=production. */
  graphiql?: boolean;
  /** The process traces (main.ts started the SDK): GraphQL operations get spans. Default: off. */
  tracing?: boolean;
}

export interface Api {
  http: ListenAddress;
  /** http://host:port/graphql */
  url: string;
  registry: Registry;
  stop(): Promise<void>;
}

export async function startApi(config: PosternConfig, deps: ApiDeps): Promise<Api> {
  const logger = childLogger(deps.logger, { component: 'api' });
  const production = config.env === 'production';
  const registry = deps.registry ?? createMetricsRegistry('api');
  const metrics = createApiMetrics(registry);
  const catalog = deps.catalog ?? loadTemplateCatalog(config.templateDir);
  const pool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-api',
    max: config.postgres.poolMax,
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    statementTimeoutMs: config.postgres.statementTimeoutMs,
    logger,
  });
  try {
    await checkSecretsAtStart(pool, config.secretsKey, logger);
  } catch (error) {
    await pool.end();
    throw error;
  }
  const graphiql = deps.graphiql ?? !production;
  const yoga = createApiYoga({
    db: pool,
    logger,
    metrics,
    intake: createSendEmailIntake(
      pool,
      { catalog, sender: config.smtp.from, urgentCategories: config.urgentCategories },
      { counter: metrics.commandsMalformed, logger },
    ),
    secretsKey: config.secretsKey,
    production,
    introspection: deps.introspection ?? !production,
    graphiql,
    tracing: deps.tracing === true,
  });
  // Its own connection: a long queue on the pool (a flood of token lookups) is not an outage.
  const readiness = openDatabaseReadinessProbe({
    dsn: config.postgres.dsn,
    applicationName: 'postern-api-readiness',
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    logger,
  });
  let ops: Awaited<ReturnType<typeof startOpsServer>>;
  try {
    ops = await startOpsServer({
      addr: config.http.api,
      maxConnections: config.http.maxConnections,
      logger: deps.logger,
      registry,
      readiness: { postgres: readiness.check },
      handle: graphqlRoute({ yoga, authenticate: createTokenLookups(pool, config.postgres.poolMax, metrics), logger, metrics, graphiql }),
    });
  } catch (error) {
    await Promise.all([readiness.end(), pool.end()]);
    throw error;
  }
  const schedule = exportQueueGauges({ registry, db: pool, intervalMs: config.engine.heartbeatIntervalMs, logger });
  logger.info({ templates: catalog.templates.size, graphiql, production }, 'GraphQL API ready at /graphql');
  let stopped = false;
  return {
    http: ops.address,
    url: `http://${ops.address.host.includes(':') ? `[${ops.address.host}]` : ops.address.host}:${ops.address.port}/graphql`,
    registry,
    async stop() {
      if (stopped) return;
      stopped = true;
      schedule.stop();
      await ops.close();
      await Promise.all([readiness.end(), pool.end()]);
    },
  };
}
