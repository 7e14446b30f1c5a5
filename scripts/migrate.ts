// `npm run migrate`: apply pending migrations to MAIL_POSTGRES_PRIMARY_DSN and exit. Every app also
// migrates at boot (under the same advisory lock), so this is for operators who migrate ahead. Like
// the apps it then warns about server settings that break a promise (prepareDatabase).
import { ConfigError, createLogger, explainStartupFailure, loadConfig, prepareDatabase } from '@postern/shared';

const log = createLogger('migrate', process.env.MAIL_LOG_LEVEL ?? 'info');
try {
  const config = loadConfig(process.env, 'tools');
  const { applied, newer } = await prepareDatabase({ dsn: config.postgres.dsn, logger: log });
  console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'nothing to apply: the schema is up to date');
  if (newer.length > 0) {
    console.log(`newer than this release: ${newer.join(', ')} (a rollback: see docs/deploy.md, "Rolling back", of the release that has them)`);
  }
} catch (error) {
  // As the processes say it (runService): what failed, why and what to do, when a person can fix it.
  const explained = error instanceof ConfigError ? null : explainStartupFailure(error);
  if (error instanceof ConfigError) console.error(error.message);
  else if (explained) log.fatal(`migration failed: ${explained.what}: ${explained.why}. ${explained.todo}`);
  else log.fatal({ err: error }, 'migration failed');
  process.exitCode = 1;
}
