// Postern's security rule (CONTRIBUTING.md), checked: "no SQL built by string interpolation". Every SQL
// text in production code is a constant string; values go in as $n parameters. A statement may
// leave a `/*MARK*/` for a constant fragment (a shared column list, ASC or DESC) that is put in
// once, when its module loads (fillMark in apps/api/src/schema/sql-marks.ts): constant text into
// constant text, so no code path can splice a value into SQL. This finds template literals that
// look like SQL and contain `${`, in apps/*/src and packages/*/src (tests excluded), as part of
// the lint step.
//
// A template literal is SQL when a keyword (SELECT, INSERT, UPDATE, DELETE, WITH) starts one of its
// lines or follows the opening backtick, when it is passed to `.query(`, or when it is assigned to
// a `*_SQL` constant. The scan is lexical (strings, comments, regex literals, nested templates),
// not a parse: good enough for our code, and it errs towards reporting.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

export interface SqlInterpolation {
  line: number;
  excerpt: string;
}

interface Template {
  start: number;
  end: number;
  interpolated: boolean;
}

/** Every template literal in `source` (nested ones too), with whether it has a `${`. */
function templates(source: string): Template[] {
  const found: Template[] = [];
  // Open templates, innermost last; each with the brace depth its current `${` started at.
  const open: Array<{ start: number; interpolated: boolean; braceDepth: number | null }> = [];
  let braceDepth = 0;
  let lastSignificant = '';
  let i = 0;
  const n = source.length;
  const inTemplateText = (): boolean => open.length > 0 && open[open.length - 1]?.braceDepth === null;
  while (i < n) {
    const c = source[i] as string;
    if (inTemplateText()) {
      const top = open[open.length - 1] as { start: number; interpolated: boolean; braceDepth: number | null };
      if (c === '\\') {
        i += 2;
      } else if (c === '`') {
        open.pop();
        found.push({ start: top.start, end: i + 1, interpolated: top.interpolated });
        lastSignificant = '`';
        i += 1;
      } else if (c === '$' && source[i + 1] === '{') {
        top.interpolated = true;
        top.braceDepth = braceDepth;
        braceDepth += 1;
        lastSignificant = '{';
        i += 2;
      } else {
        i += 1;
      }
      continue;
    }
    if (c === '/' && source[i + 1] === '/') {
      const end = source.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && source[i + 1] === '*') {
      const end = source.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === "'" || c === '"') {
      i += 1;
      while (i < n && source[i] !== c && source[i] !== '\n') i += source[i] === '\\' ? 2 : 1;
      lastSignificant = c;
      i += 1;
    } else if (c === '/' && (lastSignificant === '' || /[(,=:[!&|?{};+\-*%<>~^]/.test(lastSignificant) || /\b(return|typeof|case|of|in)$/.test(source.slice(Math.max(0, i - 8), i).trimEnd()))) {
      // A regex literal: skip it, classes included, so a quote or backtick inside it is not code.
      i += 1;
      let inClass = false;
      while (i < n && source[i] !== '\n') {
        const r = source[i];
        if (r === '\\') i += 1;
        else if (r === '[') inClass = true;
        else if (r === ']') inClass = false;
        else if (r === '/' && !inClass) break;
        i += 1;
      }
      lastSignificant = ')';
      i += 1;
    } else if (c === '`') {
      open.push({ start: i, interpolated: false, braceDepth: null });
      i += 1;
    } else if (c === '{') {
      braceDepth += 1;
      lastSignificant = c;
      i += 1;
    } else if (c === '}') {
      braceDepth -= 1;
      const top = open[open.length - 1];
      if (top && top.braceDepth === braceDepth) top.braceDepth = null;
      lastSignificant = c;
      i += 1;
    } else {
      if (!/\s/.test(c)) lastSignificant = c;
      i += 1;
    }
  }
  return found;
}

// Upper case, as every statement here is written (so prose like `With a filter` is not SQL).
const SQL_KEYWORD = /(?:^`|\n)[ \t]*(?:SELECT|INSERT|UPDATE|DELETE|WITH)\b/;

function looksLikeSql(source: string, template: Template): boolean {
  const text = source.slice(template.start, template.end);
  if (SQL_KEYWORD.test(text)) return true;
  const before = source.slice(Math.max(0, template.start - 200), template.start);
  // The first argument of .query( / .query<Row>( ...
  if (/\.query\s*(?:<[^()]*>)?\s*\(\s*$/.test(before)) return true;
  // ... or of a query config ({ text: `...` }), or a *_SQL constant.
  if (/\btext\s*:\s*$/.test(before) || /\b[A-Z0-9_]*_SQL\s*=\s*$/.test(before)) return true;
  return false;
}

export function findSqlInterpolations(source: string): SqlInterpolation[] {
  return templates(source)
    .filter((template) => template.interpolated && looksLikeSql(source, template))
    .map((template) => {
      const line = source.slice(0, template.start).split('\n').length;
      const text = source.slice(template.start, template.end);
      const at = text.indexOf('${');
      const excerptLine = line + text.slice(0, at).split('\n').length - 1;
      const excerpt = (source.split('\n')[excerptLine - 1] ?? '').trim();
      return { line: excerptLine, excerpt };
    });
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(full);
    return /\.[cm]?[jt]s$/.test(entry.name) && !/\.test\.[cm]?[jt]s$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

function productionSourceDirs(root: string): string[] {
  return ['apps', 'packages'].flatMap((group) => {
    const groupDir = path.join(root, group);
    return readdirSync(groupDir)
      .map((name) => path.join(groupDir, name, 'src'))
      .filter((dir) => {
        try {
          return statSync(dir).isDirectory();
        } catch {
          return false;
        }
      });
  });
}

const root = path.resolve(import.meta.dirname, '..');
// `node scripts/check-sql-text.ts FILE...` checks just those files (how its own failure is shown).
const files = process.argv.length > 2 ? process.argv.slice(2).map((file) => path.resolve(file)) : productionSourceDirs(root).flatMap(sourceFiles);
const problems: string[] = [];
for (const file of files) {
  for (const hit of findSqlInterpolations(readFileSync(file, 'utf8'))) {
    problems.push(`${path.relative(root, file)}:${hit.line}: ${hit.excerpt}`);
  }
}

if (problems.length > 0) {
  console.error(
    `SQL text built by interpolation (write each statement out as a constant; values as $n):\n  ${problems.join('\n  ')}`,
  );
  process.exitCode = 1;
} else {
  console.log(`sql text ok: ${files.length} files, no interpolated SQL`);
}
