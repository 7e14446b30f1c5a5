// Boot of the delivery engine, in the runbook's order (no-health-endpoints, docs/incidents.md): configuration (every problem at
// once) -> migrations under their advisory lock -> template catalog parsed -> Redis ping -> internal
// HTTP listener -> loops. Startup fails fast; once running, losing PostgreSQL or Redis is waited out
// (dead-runner, docs/incidents.md). SIGTERM / SIGINT stop it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { bootConfig, runService } from '@postern/shared';
import { startEngine } from './engine.ts';

const { config, logger } = bootConfig('core');

void runService({
  name: 'core',
  logger,
  shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
  async start() {
    const engine = await startEngine(config, { logger, migrate: true });
    return { stop: () => engine.stop() };
  },
});
