// Postern's security rule (CONTRIBUTING.md), checked as part of the lint step: "no SQL built by
// string interpolation". Reads every production source file (apps/*/src and packages/*/src, tests
// excluded), parses it with the TypeScript compiler (sql-text/parse.ts) and reports each SQL text
// that is not constant; what counts as SQL and what is refused is in sql-text/rules.ts.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { productionSourceFiles } from './production-sources.ts';
import { forEachParsedFile } from './sql-text/parse.ts';
import { findSqlInterpolations } from './sql-text/rules.ts';

const root = path.resolve(import.meta.dirname, '..');
// `node scripts/check-sql-text.ts FILE...` checks just those files (how its own failure is shown).
const files = process.argv.length > 2 ? process.argv.slice(2).map((file) => path.resolve(file)) : productionSourceFiles(root);
const problems: string[] = [];
forEachParsedFile(Object.fromEntries(files.map((file) => [file, readFileSync(file, 'utf8')])), (sourceFile) => {
  for (const hit of findSqlInterpolations(sourceFile)) {
    problems.push(`${path.relative(root, sourceFile.fileName)}:${hit.line}: ${hit.excerpt}`);
  }
});

if (problems.length > 0) {
  console.error(
    `SQL text built by interpolation (write each statement out as a constant; values as $n):\n  ${problems.join('\n  ')}`,
  );
  process.exitCode = 1;
} else {
  console.log(`sql text ok: ${files.length} files, no interpolated SQL`);
}
