// What every process does with PostgreSQL before it serves, and what `postern migrate` does alone:
// the migrations (under their advisory lock, migrate.ts), then the check of the server settings
// that would break a promise (server-settings.ts, warnings only). `postern migrate` is often the
// first thing run against a new server, so it is the first to say that `fsync` is off.
import { type MigrateOptions, type MigrationResult, runMigrations } from './migrate.ts';
import { checkServerSettings } from './server-settings.ts';

export async function prepareDatabase(options: MigrateOptions): Promise<MigrationResult> {
  const result = await runMigrations(options);
  await checkServerSettings({ dsn: options.dsn, logger: options.logger });
  return result;
}
