// The delivery engine in-process for the API tests that need mail to really leave: it relays to
// the maildev sink, with a fast poll so a new delivery is picked up at once.
import { loadConfig } from '@postern/shared';
import { type Engine, type EngineDeps, startEngine } from '../../../apps/core/src/engine.ts';
import { checkingKeysOnStop, keyCheckedLogger, sinkSmtp } from '../../harness/index.ts';
import { TEMPLATE_DIR } from './api.ts';

export async function startTestEngine(dsn: string, env: Record<string, string> = {}, deps: Partial<EngineDeps> = {}): Promise<Engine> {
  const sink = sinkSmtp();
  const config = loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_TEMPLATE_DIR: TEMPLATE_DIR,
      MAIL_SMTP_MODE: 'smtp',
      MAIL_SMTP_ADDR: `${sink.host}:${sink.port}`,
      MAIL_SMTP_FROM: 'postern@postern.test',
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_ENV: 'test',
      MAIL_LOG_LEVEL: process.env.POSTERN_E2E_LOG_LEVEL ?? 'silent',
      MAIL_SCHEDULER_POLL_INTERVAL: '200ms',
      MAIL_SHUTDOWN_TIMEOUT: '5s',
      ...env,
    },
    'core',
  );
  // Unless the test logs itself, stop() fails if a line named a key twice.
  if (deps.logger) return startEngine(config, { http: false, ...deps, logger: deps.logger });
  const checked = keyCheckedLogger('core-e2e', config.logLevel);
  return checkingKeysOnStop(await startEngine(config, { http: false, ...deps, logger: checked.logger }), checked);
}
