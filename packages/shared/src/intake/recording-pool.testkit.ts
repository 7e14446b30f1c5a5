// A stand-in for a pg pool in the intake's unit tests: it records every statement instead of
// sending it — given as text and values or as a query config (the named statements of
// accept-command.ts) — answers a SELECT with no rows and anything else with one row { id }, and
// throws `fail.error` for the statements `fail.sql` matches.

export interface RecordedStatement {
  sql: string;
  values: unknown[];
}

type Statement = string | { text: string; values?: unknown[] };

export function recordingPool(options: { id?: string; fail?: { sql: RegExp; error: Error } } = {}) {
  const statements: RecordedStatement[] = [];
  const client = {
    query: async (statement: Statement, params: unknown[] = []) => {
      const sql = typeof statement === 'string' ? statement : statement.text;
      const values = typeof statement === 'string' ? params : (statement.values ?? []);
      statements.push({ sql, values });
      if (options.fail?.sql.test(sql)) throw options.fail.error;
      if (/^\s*SELECT/i.test(sql)) return { rows: [], rowCount: 0 };
      return { rows: [{ id: options.id ?? '1' }], rowCount: 1 };
    },
    release: () => {},
  };
  return { statements, client, pool: { ...client, connect: async () => client } as never };
}
