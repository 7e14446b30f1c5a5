// Migrations run under an advisory lock before any listener opens (the no-health-endpoints order). Processes
// starting together wait for each other instead of failing: the first migrates, the rest find
// nothing to do. SQL files live in the repository's migrations/ folder.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';
import { childLogger } from '../logging/child-logger.ts';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../migrations');
export const MIGRATIONS_TABLE = 'postern_migrations';
export const MIGRATIONS_SCHEMA = 'mail';
// An arbitrary constant, distinct from node-pg-migrate's default so another tool's migrations on
// the same database do not wait for ours.
const MIGRATION_LOCK_ID = 0x506f7374; // "Post"

export interface MigrateOptions {
  dsn: string;
  logger: Logger;
  dir?: string;
}

export interface MigrationResult {
  applied: string[];
}

export async function runMigrations(options: MigrateOptions): Promise<MigrationResult> {
  const log = childLogger(options.logger, { component: 'migrate' });
  const applied = await runner({
    databaseUrl: options.dsn,
    dir: options.dir ?? MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: MIGRATIONS_TABLE,
    migrationsSchema: MIGRATIONS_SCHEMA,
    createMigrationsSchema: true,
    checkOrder: true,
    singleTransaction: true,
    lockValue: MIGRATION_LOCK_ID,
    advisoryLockMode: 'wait',
    verbose: false,
    logger: {
      debug: () => {},
      info: (message: string) => log.debug(message),
      warn: (message: string) => log.warn(message),
      error: (message: string) => log.error(message),
    },
  });
  const names = applied.map((migration) => migration.name);
  log.info({ applied: names }, names.length > 0 ? 'migrations applied' : 'schema up to date');
  return { applied: names };
}
