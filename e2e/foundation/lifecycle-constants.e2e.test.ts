// The lifecycle vocabularies the apps are built from (packages/shared/src/lifecycle/statuses.ts)
// are the ones the database enforces: each list equals, in order, the value list of the CHECK
// constraint on its column as the migrations leave it. A value added on one side only fails here,
// not as a constraint violation in production.

import { ATTEMPT_STATUSES, DELIVERY_STATUSES, FAILURE_CODES, PAYLOAD_MODES } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('lifecycle-constants');
});
afterAll(async () => {
  await db?.drop();
});

// The CHECK constraints that name exactly this one column: the value list, not the rules that
// relate it to other columns (deliveries_waiting_is_scheduled and the like).
const COLUMN_CHECKS_SQL = `
SELECT c.conname AS name, pg_get_constraintdef(c.oid) AS definition, c.convalidated AS validated
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
 WHERE c.contype = 'c' AND c.conrelid = $1::regclass AND cardinality(c.conkey) = 1 AND a.attname = $2
 ORDER BY c.conname`;

interface ColumnCheck {
  name: string;
  definition: string;
  validated: boolean;
}

/** The values of the column's one CHECK, in the order written, e.g. from
 *  CHECK ((status = ANY (ARRAY['queued'::text, 'retrying'::text, ...]))). */
async function checkedValues(table: string, column: string): Promise<{ name: string; values: string[] }> {
  const { rows } = await db.pool.query<ColumnCheck>(COLUMN_CHECKS_SQL, [table, column]);
  expect(rows, `${table}.${column}: one CHECK constraint`).toHaveLength(1);
  const check = rows[0]!;
  expect(check.validated, `${check.name} holds for every row`).toBe(true);
  expect(check.definition, check.name).toMatch(/= ANY \(ARRAY\[/);
  const values = [...check.definition.matchAll(/'((?:[^']|'')*)'::text/g)].map((match) => match[1]!.replaceAll("''", "'"));
  return { name: check.name, values };
}

describe('lifecycle constants', () => {
  it.each([
    ['mail.deliveries', 'status', DELIVERY_STATUSES],
    ['mail.deliveries', 'payload_mode', PAYLOAD_MODES],
    ['mail.attempts', 'status', ATTEMPT_STATUSES],
    ['mail.malformed_commands', 'failure_code', FAILURE_CODES],
  ] as const)('%s.%s allows exactly the shared list, in its order', async (table, column, list) => {
    const { name, values } = await checkedValues(table, column);
    expect(values, name).toEqual([...list]);
  });
});
