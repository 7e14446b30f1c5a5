// Boot of the SMTP edge: tracing first (OTEL_*, off unless an exporter is named: the modules it
// instruments must load after it, so everything else is imported once it is in place), then
// configuration (all problems at once), logger, migrations under their advisory lock, then the
// listeners; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { startTracing } from '@postern/shared/start-tracing';

const tracing = await startTracing('mta');
const { bootConfig, checkServerSettings, runMigrations, runService } = await import('@postern/shared');
const { startEdge } = await import('./edge.ts');

const { config, logger } = bootConfig('mta');

void runService({
  name: 'mta',
  logger,
  tracing,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    await runMigrations({ dsn: config.postgres.dsn, logger });
    await checkServerSettings({ dsn: config.postgres.dsn, logger });
    const edge = await startEdge(config, { logger });
    return { stop: () => edge.stop() };
  },
});
