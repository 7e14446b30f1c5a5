// Boot of the SMTP edge: configuration (all problems at once), logger, migrations under their
// advisory lock, then the listeners; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { ConfigError, createLogger, loadConfig, runMigrations, runService, unknownMailVariables } from '@postern/shared';
import { startEdge } from './edge.ts';

function boot(): void {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env, 'mta');
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`postern mta: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger('mta', config.logLevel);
  for (const name of unknownMailVariables(process.env)) logger.warn({ variable: name }, 'unknown MAIL_ variable (a typo?)');

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
}

boot();
