// Boot of the delivery engine, in the runbook's order (seed 002): configuration (every problem at
// once) -> migrations under their advisory lock -> template catalog parsed -> Redis ping -> internal
// HTTP listener -> loops. Startup fails fast; once running, losing PostgreSQL or Redis is waited out
// (seed 001). SIGTERM / SIGINT stop it within MAIL_SHUTDOWN_TIMEOUT (runService).
import { ConfigError, createLogger, loadConfig, runService, unknownMailVariables } from '@postern/shared';
import { startEngine } from './engine.ts';

function boot(): void {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env, 'core');
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`postern core: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger('core', config.logLevel);
  for (const name of unknownMailVariables(process.env)) logger.warn({ variable: name }, 'unknown MAIL_ variable (a typo?)');

  void runService({
    name: 'core',
    logger,
    shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
    async start() {
      const engine = await startEngine(config, { logger, migrate: true });
      return { stop: () => engine.stop() };
    },
  });
}

boot();
