// Migrations run under an advisory lock before any listener opens (the no-health-endpoints order). Processes
// starting together wait for each other instead of failing: the first migrates, the rest find
// nothing to do. SQL files live in the repository's migrations/ folder.
//
// A database migrated by a later release holds migrations this release does not have: it is being
// run after a rollback (docs/deploy.md, "Rolling back"). node-pg-migrate accepts that without a
// word, and it must start (a rollback is the previous release running on the new schema); what it
// gets is a warning naming them, so that the operator reads what each one left that this release
// does not know (the table in docs/deploy.md), and the result's `newer` says it to `postern migrate`.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
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
  /** Migrations recorded in the database that this release does not have: a later release's. */
  newer: string[];
}

// What node-pg-migrate recorded (MIGRATIONS_SCHEMA.MIGRATIONS_TABLE): each file's name without its extension.
const RECORDED_SQL = 'SELECT name FROM mail.postern_migrations ORDER BY run_on, id';

/** The migrations' names in `dir`, as node-pg-migrate records them. */
function migrationNames(dir: string): Set<string> {
  return new Set(
    readdirSync(dir)
      .filter((file) => /\.(sql|js|cjs|mjs|ts)$/.test(file))
      .map((file) => file.slice(0, file.lastIndexOf('.'))),
  );
}

/** The recorded migrations that `dir` does not have, in the order they ran. */
async function recordedElsewhere(dsn: string, dir: string): Promise<string[]> {
  const known = migrationNames(dir);
  const client = new pg.Client({ connectionString: dsn, application_name: 'postern-migrate' });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(RECORDED_SQL);
    return rows.map((row) => row.name).filter((name) => !known.has(name));
  } finally {
    await client.end();
  }
}

export async function runMigrations(options: MigrateOptions): Promise<MigrationResult> {
  const log = childLogger(options.logger, { component: 'migrate' });
  const dir = options.dir ?? MIGRATIONS_DIR;
  const applied = await runner({
    databaseUrl: options.dsn,
    dir,
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
  const newer = await recordedElsewhere(options.dsn, dir);
  if (newer.length > 0) {
    log.warn(
      { newer },
      `the database has ${newer.length} migration(s) this release does not have (${newer.join(', ')}): a later release migrated it, so this is a rollback; this release runs on that schema; what each one changes for it is in docs/deploy.md ("Rolling back") of the release that has it`,
    );
  }
  return { applied: names, newer };
}
