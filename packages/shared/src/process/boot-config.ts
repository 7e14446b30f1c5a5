// The first step of every Postern process: read the environment once into a typed config, or stop
// with one message that lists every problem (exit 2: a usage error, not a crash), then a logger,
// and a warning for each MAIL_ variable nobody reads (most likely a typo that silently kept a default).

import { type AppName, loadConfig, type PosternConfig, unknownMailVariables } from '../config/load-config.ts';
import { ConfigError } from '../errors/config-error.ts';
import { createLogger, type Logger } from '../logging/logger.ts';

export function bootConfig(app: Exclude<AppName, 'tools'>): { config: PosternConfig; logger: Logger } {
  let config: PosternConfig;
  try {
    config = loadConfig(process.env, app);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`postern ${app}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(app, config.logLevel, { format: config.logFormat });
  for (const name of unknownMailVariables(process.env)) logger.warn({ variable: name }, 'unknown MAIL_ variable (a typo?)');
  return { config, logger };
}
