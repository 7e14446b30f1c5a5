// Boot of the SMTP edge: configuration (all problems at once), logger, migrations under their
// advisory lock, then the listeners; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { bootConfig, runMigrations, runService } from '@postern/shared';
import { startEdge } from './edge.ts';

const { config, logger } = bootConfig('mta');

void runService({
  name: 'mta',
  logger,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    await runMigrations({ dsn: config.postgres.dsn, logger });
    const edge = await startEdge(config, { logger });
    return { stop: () => edge.stop() };
  },
});
