// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the snippets are source text the lint reads, `${` included.
// Snippets the SQL-text lint must let through and must refuse, parsed by the real compiler: a
// TypeScript update that changes the API sql-text/parse.ts relies on fails here too.
import { describe, expect, it } from 'vitest';
import { forEachParsedFile } from './parse.ts';
import { findSqlInterpolations, type SqlInterpolation } from './rules.ts';

/** The lint's findings for each snippet, parsed in one go (each parse starts the compiler). */
function lint(snippets: readonly string[]): SqlInterpolation[][] {
  const files = Object.fromEntries(snippets.map((text, index) => [`/snippets/s${index}.ts`, text]));
  const found: SqlInterpolation[][] = [];
  forEachParsedFile(files, (sourceFile) => {
    found.push(findSqlInterpolations(sourceFile));
  });
  return found;
}

describe('the SQL-text lint', () => {
  it('lets constant SQL through, whatever its shape', () => {
    const constant = [
      'const FIND_SQL = `SELECT id FROM mail.deliveries WHERE id = $1`;',
      "await db.query('SELECT 1');",
      'await pool.query<{ n: number }>(`\n  SELECT count(*) AS n\n  FROM mail.aliases\n`, [domain]);',
      "const LIST_SQL = 'SELECT a ' + 'FROM b';",
      // A fragment put in once, from constants, when the module loads (sql-marks.ts).
      "const PAGE_SQL = fillMark(TEMPLATE_SQL, 'DIRECTION', 'ASC');\nawait db.query(PAGE_SQL, [after]);",
      // Interpolated text that is not SQL: prose, a log line, a keyword not at a line start.
      'const message = `With a filter of ${n} items`;\nlog(`selected ${n}; UPDATE later`);',
      "const label = 'count: ' + total;",
      // A `${` inside a string or a comment is not a substitution.
      "const hint = 'SELECT ${x}'; // await db.query(`DELETE ${y}`)",
      'const pattern = /`SELECT ${x}`/;',
    ];
    expect(lint(constant)).toEqual(constant.map(() => []));
  });

  it('refuses template substitutions in SQL, naming the line of the first one', () => {
    const [keyword, query, config, named, nested] = lint([
      'const q = `\n  SELECT *\n  FROM t\n  WHERE id = ${id}`;',
      'await db.query(`${verb} FROM t`, []);',
      'await db.query({ name: "x", text: `SELECT ${columns} FROM t`, values: [] });',
      'export const PAGE_SQL = (`\n  ORDER BY created_at ${direction}` as const);',
      'const q = `SELECT a FROM t ${cond ? `AND b = ${b}` : ""}`;',
    ]);
    expect(keyword).toEqual([{ line: 4, excerpt: 'WHERE id = ${id}`;' }]);
    expect(query).toEqual([{ line: 1, excerpt: 'await db.query(`${verb} FROM t`, []);' }]);
    expect(config).toHaveLength(1);
    expect(named).toEqual([{ line: 2, excerpt: 'ORDER BY created_at ${direction}` as const);' }]);
    // One report for the statement; the nested template is not SQL by itself.
    expect(nested).toHaveLength(1);
  });

  it('refuses concatenations that put a non-literal into SQL', () => {
    const [keyword, query, named, appended, parenthesized] = lint([
      "const q = 'SELECT * FROM t WHERE id = ' + id;",
      "await client.query('DELETE FROM t' + where, values);",
      "const LIST_SQL = BASE_SQL + ' LIMIT 10';",
      "let FILTER_SQL = 'SELECT 1';\nFILTER_SQL += extra;",
      "await db.query(('SELECT ' + columns) + ' FROM t');",
    ]);
    expect(keyword).toEqual([{ line: 1, excerpt: "const q = 'SELECT * FROM t WHERE id = ' + id;" }]);
    expect(query).toHaveLength(1);
    expect(named).toEqual([{ line: 1, excerpt: "const LIST_SQL = BASE_SQL + ' LIMIT 10';" }]);
    expect(appended).toEqual([{ line: 2, excerpt: 'FILTER_SQL += extra;' }]);
    expect(parenthesized).toHaveLength(1);
  });
});
