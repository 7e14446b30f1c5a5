// Every migration that does more than add is named in docs/deploy.md's "Rolling back" table, and
// the table names no migration that does not exist (rollback.ts says which statements count).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from './migration-files.ts';
import { nonAdditive, nonAdditiveMigrations } from './rollback.ts';

const DEPLOY = path.resolve(import.meta.dirname, '..', '..', 'docs', 'deploy.md');

/** The migration names in the table of the "Rolling back" section (its rows: lines starting with `|`). */
function namedInRollingBack(markdown: string): Set<string> {
  const start = markdown.indexOf('\n### Rolling back\n');
  if (start < 0) return new Set();
  const body = markdown.slice(markdown.indexOf('\n', start + 1) + 1);
  const end = body.search(/^#{1,3} /m);
  const section = end < 0 ? body : body.slice(0, end);
  const rows = section.split('\n').filter((line) => line.startsWith('|'));
  return new Set(rows.flatMap((row) => [...row.matchAll(/\b(\d{13}_[a-z0-9-]+)\b/g)].map((match) => match[1] as string)));
}

describe('what a migration does beyond adding', () => {
  it('finds drops, renames, type changes, required columns and rewritten rows, in DO blocks too', () => {
    const sql = [
      '-- Up Migration',
      '-- DROP TABLE in a comment is not a statement',
      'CREATE TABLE mail.things (id bigint PRIMARY KEY);',
      'ALTER TABLE mail.deliveries ADD COLUMN a smallint NOT NULL DEFAULT 1;',
      'ALTER TABLE mail.deliveries ADD COLUMN b text;',
      'ALTER TABLE mail.deliveries ADD COLUMN c text NOT NULL;',
      'ALTER TABLE mail.deliveries ALTER COLUMN b SET NOT NULL;',
      'ALTER TABLE mail.deliveries ALTER COLUMN b TYPE varchar(10);',
      'ALTER INDEX mail.x RENAME TO y;',
      'DROP INDEX mail.z;',
      'DO $$',
      'BEGIN',
      "  UPDATE mail.suppressions SET address = lower(address);",
      'END',
      '$$;',
      '',
      '-- Down Migration',
      'DROP TABLE mail.things;',
    ].join('\n');
    expect(nonAdditive(sql).map((found) => found.why)).toEqual([
      'adds a required column without a default',
      'makes a column required',
      'changes a type',
      'renames something',
      'removes something',
      'rewrites or deletes rows',
    ]);
  });

  it("leaves a function's body alone: it runs when called, not when the migration runs", () => {
    const sql = [
      '-- Up Migration',
      'CREATE FUNCTION mail.bump() RETURNS trigger LANGUAGE plpgsql AS $$',
      'BEGIN',
      '  UPDATE mail.counter SET n = n + 1;',
      '  RETURN NULL;',
      'END;',
      '$$;',
      'CREATE TRIGGER bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mail.things',
      '  FOR EACH STATEMENT EXECUTE FUNCTION mail.bump();',
    ].join('\n');
    expect(nonAdditive(sql)).toEqual([]);
  });

  it('docs/deploy.md, "Rolling back", names every migration that does more than add, and only migrations that exist', () => {
    const named = namedInRollingBack(readFileSync(DEPLOY, 'utf8'));
    const missing = [...nonAdditiveMigrations().entries()]
      .filter(([name]) => !named.has(name))
      .map(([name, found]) => `${name}: ${found.map((f) => `${f.why} (${f.statement})`).join('; ')}`);
    expect(missing).toEqual([]);
    expect([...named].filter((name) => !existsSync(path.join(MIGRATIONS, `${name}.sql`)))).toEqual([]);
  });
});
