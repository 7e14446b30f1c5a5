// What the documentation tells operators to run, taken out of README.md and docs/**/*.md so that
// tests can hold it against the code: the GraphQL operations against the API's schema
// (documented-graphql.test.ts beside this file), the SQL statements against the migrated database
// (e2e/foundation/documented-sql.e2e.test.ts). Operators follow the runbook literally on their worst
// day: a renamed field or column must fail a test, not that step.
//
// What is taken, line by line (no markdown parser; exactly these forms):
//   GraphQL  - every single-quoted JSON request body with a query, '{"query":"..."}': the argument of
//              the `gql` helper or of curl's -d, in a shell block or in inline code, over several lines
//              when the quoted text spans them (a shell single quote holds no quote, so it ends at the
//              next one);
//            - every ```graphql fenced block, whole, as one document.
//   SQL      - every ```sql fenced block, one statement per line ending with `;`;
//            - every inline code span outside a fenced block that starts with an SQL keyword in upper
//              case and ends with `;`: `SELECT ... LIMIT 20;`. A span without the `;` (`VACUUM FULL`,
//              `LISTEN mail_delivery_due`) names a statement in prose and is not taken.
// Placeholders are not rewritten here; each test says how it treats them.
import { type FencedBlock, fencedBlocks, operatorDocs, REPOSITORY_ROOT } from './markdown.ts';

export interface DocumentedGraphql {
  file: string;
  line: number;
  /** `request`: a JSON body (`query`, perhaps `variables`), as curl sends it; `document`: GraphQL text. */
  form: 'request' | 'document';
  text: string;
}

export interface DocumentedSql {
  file: string;
  line: number;
  /** The statement as written, without its closing `;`. */
  text: string;
}

const SQL_KEYWORDS = [
  'SELECT', 'WITH', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'VALUES', 'TABLE', 'EXPLAIN', 'SET', 'RESET', 'SHOW',
  'ALTER', 'CREATE', 'DROP', 'VACUUM', 'ANALYZE', 'REINDEX', 'CLUSTER', 'LOCK', 'TRUNCATE', 'GRANT', 'REVOKE', 'COMMENT',
];
const INLINE_SQL = new RegExp(`\`((?:${SQL_KEYWORDS.join('|')})\\b[^\`]*?);\``, 'g');
const REQUEST_BODY = /'(\{"query":[^']*)'/g;

export function documentedGraphql(root = REPOSITORY_ROOT): DocumentedGraphql[] {
  return operatorDocs(root).flatMap(({ file, text }) => graphqlIn(file, text));
}

export function documentedSql(root = REPOSITORY_ROOT): DocumentedSql[] {
  return operatorDocs(root).flatMap(({ file, text }) => sqlIn(file, text));
}

export function graphqlIn(file: string, text: string): DocumentedGraphql[] {
  const requests = [...text.matchAll(REQUEST_BODY)].map(
    (match): DocumentedGraphql => ({ file, line: lineAt(text, match.index), form: 'request', text: match[1] as string }),
  );
  const documents = fencedBlocks(text)
    .blocks.filter((block) => block.info === 'graphql')
    .map((block): DocumentedGraphql => ({ file, line: block.line, form: 'document', text: block.lines.join('\n') }));
  return [...requests, ...documents].sort((a, b) => a.line - b.line);
}

export function sqlIn(file: string, text: string): DocumentedSql[] {
  const { blocks, outside } = fencedBlocks(text);
  const fromBlocks = blocks.filter((block) => block.info === 'sql').flatMap((block) => statementsOf(file, block));
  const inline = outside.flatMap(({ line, content }) =>
    [...content.matchAll(INLINE_SQL)].map((match): DocumentedSql => ({ file, line, text: match[1] as string })),
  );
  return [...fromBlocks, ...inline].sort((a, b) => a.line - b.line);
}

/** A ```sql block's statements: each ends with the line that ends with `;` (a last one without it is kept too). */
function statementsOf(file: string, block: FencedBlock): DocumentedSql[] {
  const statements: DocumentedSql[] = [];
  let start = 0;
  let pending: string[] = [];
  block.lines.forEach((content, index) => {
    if (pending.length === 0 && (content.trim() === '' || content.trim().startsWith('--'))) return;
    if (pending.length === 0) start = block.line + index;
    pending.push(content);
    if (content.trimEnd().endsWith(';')) {
      statements.push({ file, line: start, text: pending.join('\n').trimEnd().slice(0, -1) });
      pending = [];
    }
  });
  if (pending.length > 0) statements.push({ file, line: start, text: pending.join('\n').trimEnd() });
  return statements;
}

function lineAt(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}
