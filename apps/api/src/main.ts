// Boot of the GraphQL API: tracing first (OTEL_*, off unless an exporter is named: the modules it
// instruments must load after it, so everything else is imported once it is in place), then
// configuration (all problems at once), logger, migrations under their advisory lock, then the
// listener; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { startTracing } from '@postern/shared/start-tracing';

const tracing = await startTracing('api');
const { bootConfig, createPool, prepareDatabase, runService, stdoutSink } = await import('@postern/shared');
const { DEV_TOKEN_FLAG, mintDevToken } = await import('./dev-token.ts');
const { startApi } = await import('./server.ts');

const { config, logger } = bootConfig('api');
// Read once, here, like the rest of the environment: set by scripts/start.ts for `npm start`.
const wantsDevToken = process.env[DEV_TOKEN_FLAG] === '1';

void runService({
  name: 'api',
  logger,
  tracing,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    await prepareDatabase({ dsn: config.postgres.dsn, logger });
    const api = await startApi(config, { logger, tracing: tracing.enabled });
    if (wantsDevToken) {
      if (config.env !== 'development') {
        logger.warn({ env: config.env }, `${DEV_TOKEN_FLAG}=1 ignored outside MAIL_ENV=development`);
      } else {
        const pool = createPool({ dsn: config.postgres.dsn, applicationName: 'postern-api-dev-token', max: 1, logger });
        try {
          // Beside the log lines, through their sink: never a write that blocks on a full pipe.
          await mintDevToken(pool, api.url, (text) => stdoutSink().write(`${text}\n`));
        } finally {
          await pool.end();
        }
      }
    }
    return { stop: () => api.stop() };
  },
});
