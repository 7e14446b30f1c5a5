// Every SQL statement README.md and docs/**/*.md give operators (scripts/docs/documented-code.ts
// says which forms are taken) runs against the schema the migrations leave: a renamed column fails
// here with the doc's file:line and PostgreSQL's message, not in psql during an incident.
//
// Each kind of statement is checked without side effects, on this file's own clone of the template:
//   SELECT, WITH, INSERT, UPDATE, DELETE, MERGE, VALUES, TABLE: PREPAREd and EXPLAINed (EXECUTE with
//     every placeholder NULL), never run: names, types and the plan are checked, no row is read or
//     written;
//   VACUUM, and CREATE INDEX / REINDEX CONCURRENTLY: PostgreSQL takes them neither under EXPLAIN nor
//     in a transaction, so they run as written, on the clone (no row changes; the clone is dropped);
//   anything else (SET, SHOW, ANALYZE, ALTER TABLE, CREATE INDEX, LOCK TABLE, ...): run in a
//     transaction that is rolled back, with a 2 s lock timeout. A statement PostgreSQL refuses in a
//     transaction block and that acts on the whole server (ALTER SYSTEM, CREATE DATABASE) is not run:
//     the server is every e2e file's. It fails here with PostgreSQL's refusal.
// Placeholders, `<what>` or `'<what>'`, become parameters $1, $2, ... whose types PostgreSQL infers
// from where they stand; only statements of the first kind may have them.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DocumentedSql, documentedSql } from '../../scripts/docs/documented-code.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

const PLACEHOLDER = /'<[^'<>\n]+>'|<[a-z][a-z0-9 _-]*>/g;

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('documented-sql');
});
afterAll(async () => {
  await db?.drop();
});

/** Runs one documented statement the way its kind allows; PostgreSQL's error if it fails. */
async function check(statement: DocumentedSql): Promise<string | null> {
  let placeholders = 0;
  const text = statement.text.replace(PLACEHOLDER, () => `$${++placeholders}`);
  const client = await db.pool.connect();
  try {
    await client.query("SET lock_timeout = '2s'");
    if (/^(SELECT|WITH|INSERT|UPDATE|DELETE|MERGE|VALUES|TABLE)\b/i.test(text)) {
      // Test-only: the statement is the doc's own text, planned and never executed.
      await client.query('BEGIN');
      await client.query(`PREPARE documented_statement AS ${text}`);
      const nulls = placeholders > 0 ? `(${Array(placeholders).fill('NULL').join(', ')})` : '';
      await client.query(`EXPLAIN EXECUTE documented_statement${nulls}`);
      await client.query('ROLLBACK');
    } else if (placeholders > 0) {
      return 'placeholders are taken only in statements EXPLAIN takes (SELECT, INSERT, UPDATE, DELETE, ...)';
    } else if (/^VACUUM\b|\bCONCURRENTLY\b/i.test(text)) {
      await client.query(text);
    } else {
      await client.query('BEGIN');
      await client.query(text);
      await client.query('ROLLBACK');
    }
    return null;
  } catch (error) {
    return (error as Error).message;
  } finally {
    // Dropped, not reused: it may hold a prepared statement, a setting or an aborted transaction.
    client.release(true);
  }
}

describe('SQL in README.md and docs/**/*.md', () => {
  const statements = documentedSql();

  it('is found (the runbook has statements to run)', () => {
    expect(statements.some((statement) => statement.file === 'docs/runbook.md')).toBe(true);
  });

  it('runs against the migrated schema', async () => {
    const problems: string[] = [];
    for (const statement of statements) {
      const problem = await check(statement);
      if (problem) problems.push(`${statement.file}:${statement.line}: ${problem}\n    ${statement.text}`);
    }
    expect(problems).toEqual([]);
  });

  it('fails on a column the schema does not have, and types placeholders by where they stand', async () => {
    const wrongColumn = { file: 'doc.md', line: 7, text: 'SELECT site, retry_at FROM mail.site_backoffs' };
    expect(await check(wrongColumn)).toBe('column "retry_at" does not exist');
    const placeholder = { file: 'doc.md', line: 8, text: "SELECT status FROM mail.deliveries WHERE id = '<delivery id>' AND source = <source>" };
    expect(await check(placeholder)).toBeNull();
    const notAUuid = { file: 'doc.md', line: 9, text: "SELECT status FROM mail.deliveries WHERE id = 'the id'" };
    expect(await check(notAUuid)).toMatch(/invalid input syntax for type uuid/);
  });
});
