// Which migrations the previous release may not run on unchanged. docs/deploy.md promises a rollback:
// the previous release on the new schema. That holds for a migration that only adds (tables, columns
// with a default, wider constraints); a statement that removes, renames, retypes, makes a column
// required or rewrites rows can take from the previous release something it uses. Such a migration
// is not refused: it is named in docs/deploy.md's "Rolling back" table with what the previous
// release sees and what the operator does (rollback.test.ts checks the table against this).
// Drilled: 1767000000000_addresses-nfc rewrites alias spellings, and the previous release's edge
// then answered 550 to the spelling it had accepted until the migration.
import { MIGRATIONS, migrationFiles, upSection, withoutComments } from './migration-files.ts';

export interface NonAdditive {
  /** The statement's first line, as written. */
  statement: string;
  /** What it does that the previous release may notice. */
  why: string;
}

// Each rule reads one statement: comments gone, function bodies gone (a function's UPDATE runs
// only when a later statement calls it), a DO block's statements each their own.
const RULES: readonly { test: (statement: string) => boolean; why: string }[] = [
  { test: (s) => /^\s*(UPDATE|DELETE\s+FROM|TRUNCATE)\b/i.test(s), why: 'rewrites or deletes rows' },
  {
    test: (s) => /\bDROP\s+(TABLE|COLUMN|CONSTRAINT|INDEX|TRIGGER|FUNCTION|VIEW|TYPE|SCHEMA|DEFAULT|NOT\s+NULL)\b/i.test(s),
    why: 'removes something',
  },
  { test: (s) => /\bRENAME\b/i.test(s), why: 'renames something' },
  { test: (s) => /\bALTER\s+TYPE\b|\bSET\s+DATA\s+TYPE\b|\bALTER\s+COLUMN\s+\S+\s+TYPE\b/i.test(s), why: 'changes a type' },
  { test: (s) => /\bSET\s+NOT\s+NULL\b/i.test(s), why: 'makes a column required' },
  {
    test: (s) => /\bADD\s+COLUMN\b/i.test(s) && /\bNOT\s+NULL\b/i.test(s) && !/\b(DEFAULT|GENERATED)\b/i.test(s),
    why: 'adds a required column without a default',
  },
];

/** The Up section of a node-pg-migrate SQL file, without comments and without function bodies. */
function upStatements(sql: string): string[] {
  const code = withoutComments(upSection(sql)).replace(/(CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\b[\s\S]*?)\$(\w*)\$[\s\S]*?\$\2\$/gi, '$1');
  return code
    .split(';')
    .map((statement) => statement.replace(/^\s*(DO\s+\$\w*\$\s*)?(BEGIN\b)?/i, '').trim())
    .filter((statement) => statement.length > 0);
}

/** The statement's line that says what it does (in a DO block's IF, not the IF). */
function telling(statement: string): string {
  const lines = statement.split('\n').map((line) => line.trim());
  return lines.find((line) => /\b(DROP|RENAME|TYPE|NOT\s+NULL|UPDATE|DELETE|TRUNCATE)\b/i.test(line)) ?? lines[0] ?? statement;
}

/** The statements of a migration's Up section that do more than add. */
export function nonAdditive(sql: string): NonAdditive[] {
  const found: NonAdditive[] = [];
  for (const statement of upStatements(sql)) {
    for (const rule of RULES) {
      if (rule.test(statement)) found.push({ statement: telling(statement), why: rule.why });
    }
  }
  return found;
}

/** Every migration (its name, as recorded: the file name without `.sql`) with what it does beyond adding. */
export function nonAdditiveMigrations(dir = MIGRATIONS): Map<string, NonAdditive[]> {
  const result = new Map<string, NonAdditive[]>();
  for (const { name, sql } of migrationFiles(dir)) {
    const found = nonAdditive(sql);
    if (found.length > 0) result.set(name, found);
  }
  return result;
}
