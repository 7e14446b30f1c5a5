// What every process does with PostgreSQL before it serves: the migrations (under their advisory
// lock, migrate.ts), then the check of the server settings that would break a promise
// (server-settings.ts, warnings only).
import { type MigrateOptions, runMigrations } from './migrate.ts';
import { checkServerSettings } from './server-settings.ts';

export async function prepareDatabase(options: MigrateOptions): Promise<void> {
  await runMigrations(options);
  await checkServerSettings({ dsn: options.dsn, logger: options.logger });
}
