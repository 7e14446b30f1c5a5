// The migrations' SQL files as the checks in this folder read them (rollback.ts, what a migration
// does beyond adding; concurrent-index.test.ts, the by-hand index statements of their headers):
// each file by its recorded name, and its Up section, with or without its comments.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const MIGRATIONS = path.resolve(import.meta.dirname, '..', '..', 'migrations');

/** Every SQL migration in `dir`, in the order they run: its recorded name (the file name without
 *  `.sql`) and its text. */
export function migrationFiles(dir = MIGRATIONS): Array<{ name: string; sql: string }> {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => ({ name: file.replace(/\.sql$/, ''), sql: readFileSync(path.join(dir, file), 'utf8') }));
}

/** The Up section of a node-pg-migrate SQL file: what runs (its Down section is not). */
export function upSection(sql: string): string {
  return sql.split(/^--\s*Down Migration\b/im)[0] as string;
}

/** `sql` without its `--` comments. */
export function withoutComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '');
}
