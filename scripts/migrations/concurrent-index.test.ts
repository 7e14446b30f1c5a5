// A migration's header may give the `CREATE INDEX CONCURRENTLY IF NOT EXISTS` statement an operator
// runs by hand before upgrading, to build a big table's index without blocking its writes
// (docs/deploy.md, "Upgrades"); the migration then finds the index and builds nothing. IF NOT EXISTS
// goes by the name alone: a header statement that drifted from the migration's own (another column,
// another order) would leave the operator's index in place of the migration's, silently. So the
// header's statement must be the migration's CREATE INDEX with CONCURRENTLY added, word for word.
import { describe, expect, it } from 'vitest';
import { migrationFiles, upSection, withoutComments } from './migration-files.ts';

const normalise = (statement: string) => statement.replace(/\s+/g, ' ').trim();

/** The header's by-hand statements (comment lines) and the Up section's CREATE INDEX statements. */
function indexStatements(sql: string): { byHand: string[]; built: string[] } {
  const up = upSection(sql);
  const byHand = [...up.matchAll(/^--\s*(CREATE INDEX CONCURRENTLY\b[^;]*;)/gim)].map((match) => normalise(match[1] as string));
  const built = [...withoutComments(up).matchAll(/\b(CREATE (?:UNIQUE )?INDEX\b[^;]*;)/gi)].map((match) => normalise(match[1] as string));
  return { byHand, built };
}

describe("migrations' by-hand CREATE INDEX CONCURRENTLY statements", () => {
  const withByHand = migrationFiles()
    .map(({ name, sql }) => ({ file: name, ...indexStatements(sql) }))
    .filter(({ byHand }) => byHand.length > 0);

  it('are the migration\'s own CREATE INDEX, CONCURRENTLY added', () => {
    expect(withByHand.length).toBeGreaterThan(0);
    for (const { file, byHand, built } of withByHand) {
      for (const statement of byHand) expect(built, file).toContain(statement.replace(/\bCONCURRENTLY /i, ''));
    }
  });

  it('tells a drifted statement apart', () => {
    const sql = [
      '-- Up Migration',
      '--   CREATE INDEX CONCURRENTLY IF NOT EXISTS x_idx ON mail.x (a, b);',
      'CREATE INDEX IF NOT EXISTS x_idx ON mail.x (b, a);',
    ].join('\n');
    const { byHand, built } = indexStatements(sql);
    expect(built).not.toContain((byHand[0] as string).replace(/\bCONCURRENTLY /i, ''));
  });
});
