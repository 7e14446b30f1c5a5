// Boot of the delivery engine, in the runbook's order (no-health-endpoints, docs/incidents.md):
// tracing (OTEL_*, off unless an exporter is named; first, because the modules it instruments must
// load after it, so everything else is imported once it is in place) -> configuration (every
// problem at once) -> migrations under their advisory lock -> template catalog parsed -> Redis
// ping -> internal HTTP listener -> loops. Startup fails fast; once running, losing PostgreSQL or
// Redis is waited out (dead-runner, docs/incidents.md). SIGTERM / SIGINT stop it within
// MAIL_SHUTDOWN_TIMEOUT (runService).
import { startTracing } from '@postern/shared/start-tracing';

const tracing = await startTracing('core');
const { bootConfig, runService } = await import('@postern/shared');
const { startEngine } = await import('./engine.ts');

const { config, logger } = bootConfig('core');

void runService({
  name: 'core',
  logger,
  tracing,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    const engine = await startEngine(config, { logger, migrate: true });
    return { stop: () => engine.stop() };
  },
});
