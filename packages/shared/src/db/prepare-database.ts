// What every process does with PostgreSQL before it serves, and what `postern migrate` does alone:
// refuse a pooler that does not keep sessions (session-pooling.ts; first, since the migrations'
// advisory lock is a session's), the migrations (under that lock, migrate.ts), then the check of
// the server settings that would break a promise (server-settings.ts, warnings only). `postern migrate` is often the
// first thing run against a new server, so it is the first to say that `fsync` is off.
import { type MigrateOptions, type MigrationResult, runMigrations } from './migrate.ts';
import { checkServerSettings } from './server-settings.ts';
import { assertSessionsKept } from './session-pooling.ts';

export async function prepareDatabase(options: MigrateOptions): Promise<MigrationResult> {
  await assertSessionsKept(options.dsn);
  const result = await runMigrations(options);
  await checkServerSettings({ dsn: options.dsn, logger: options.logger });
  return result;
}
