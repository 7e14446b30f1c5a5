// Boot of the GraphQL API: configuration (all problems at once), logger, migrations under their
// advisory lock, then the listener; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { bootConfig, createPool, runMigrations, runService } from '@postern/shared';
import { DEV_TOKEN_FLAG, mintDevToken } from './dev-token.ts';
import { startApi } from './server.ts';

const { config, logger } = bootConfig('api');
// Read once, here, like the rest of the environment: set by scripts/start.ts for `npm start`.
const wantsDevToken = process.env[DEV_TOKEN_FLAG] === '1';

void runService({
  name: 'api',
  logger,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    await runMigrations({ dsn: config.postgres.dsn, logger });
    const api = await startApi(config, { logger });
    if (wantsDevToken) {
      if (config.env !== 'development') {
        logger.warn({ env: config.env }, `${DEV_TOKEN_FLAG}=1 ignored outside MAIL_ENV=development`);
      } else {
        const pool = createPool({ dsn: config.postgres.dsn, applicationName: 'postern-api-dev-token', max: 1, logger });
        try {
          await mintDevToken(pool, api.url, (text) => process.stdout.write(`${text}\n`));
        } finally {
          await pool.end();
        }
      }
    }
    return { stop: () => api.stop() };
  },
});
