// Keyset pagination on (created_at, id): a page starts strictly after the last row the client saw,
// so rows inserted meanwhile never shift a page and no row is seen twice (OFFSET would do both).
// The cursor carries the timestamp at microsecond precision, as PostgreSQL stores it; a JS Date
// would round it to milliseconds and skip or repeat rows created within the same millisecond.
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import { resolveCursorConnection } from '@pothos/plugin-relay';
import { GraphQLError } from 'graphql';

export const PAGE_DEFAULT_SIZE = 20;
export const PAGE_MAX_SIZE = 100;

export interface KeysetRow {
  id: string;
  cursorAt: string;
}

interface Cursor {
  at: string;
  id: string;
}

export function encodeCursor(row: KeysetRow): string {
  return Buffer.from(JSON.stringify([row.cursorAt, row.id]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): Cursor {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof at === 'string' && typeof id === 'string' && !Number.isNaN(Date.parse(at)) && /^[0-9a-f-]{1,36}$/.test(id)) {
      return { at, id };
    }
  } catch {
    // fall through: the same answer for every malformed cursor
  }
  throw new GraphQLError('invalid cursor: pass back a cursor this API returned', { extensions: { code: 'BAD_USER_INPUT' } });
}

/** Forward pages read ascending; a backward page (`last`/`before`) reads descending, reversed after. */
export type KeysetDirection = 'ASC' | 'DESC';

/**
 * A list query, written out once per direction: two constant SQL texts, identical but for ASC/DESC
 * in their ORDER BY. Their parameters, in this order:
 *   $1..$k        the list's own filters, each one `($n::type IS NULL OR condition)`;
 *   $k+1, $k+2    the `after` cursor (timestamp, id), null for none: `AND ($k+1::timestamptz IS NULL
 *                 OR (created_at, id) > ($k+1, $k+2::idtype))`;
 *   $k+3, $k+4    the `before` cursor, the same with `<`;
 *   $k+5          LIMIT.
 * The cursor columns also give the row's `"cursorAt"` in the SELECT list, as
 * `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` (UTC, microseconds).
 * With the values bound, PostgreSQL folds each `$n IS NULL OR ...` away, so an absent filter or
 * cursor costs nothing and a present one can use its index.
 */
export type KeysetStatements = Readonly<Record<KeysetDirection, string>>;

export interface KeysetConnection<Row> {
  edges: Array<{ cursor: string; node: Row }>;
  pageInfo: { startCursor: string; endCursor: string; hasPreviousPage: boolean; hasNextPage: boolean };
}

/**
 * A relay connection over rows ordered by (created_at, id), read by `statements` with the list's
 * `filters` as $1..$k; `query` runs the chosen text with the full parameter list.
 */
export function keysetConnection<Row extends KeysetRow>(
  args: DefaultConnectionArguments,
  statements: KeysetStatements,
  filters: readonly unknown[],
  query: (text: string, values: unknown[]) => Promise<Row[]>,
): Promise<KeysetConnection<Row>> {
  return resolveCursorConnection(
    { args, toCursor: (row) => encodeCursor(row as Row), defaultSize: PAGE_DEFAULT_SIZE, maxSize: PAGE_MAX_SIZE },
    ({ after, before, limit, inverted }) => {
      const afterCursor = after ? decodeCursor(after) : null;
      const beforeCursor = before ? decodeCursor(before) : null;
      const direction: KeysetDirection = inverted ? 'DESC' : 'ASC';
      return query(statements[direction], [
        ...filters,
        afterCursor?.at ?? null,
        afterCursor?.id ?? null,
        beforeCursor?.at ?? null,
        beforeCursor?.id ?? null,
        limit,
      ]);
    },
  ) as Promise<KeysetConnection<Row>>;
}
