// Keyset pagination on (created_at, id): a page starts strictly after the last row the client saw,
// so rows inserted meanwhile never shift a page and no row is seen twice (OFFSET would do both).
// The cursor carries the timestamp at microsecond precision, as PostgreSQL stores it; a JS Date
// would round it to milliseconds and skip or repeat rows created within the same millisecond.
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import { resolveCursorConnection } from '@pothos/plugin-relay';
import { GraphQLError } from 'graphql';

export const PAGE_DEFAULT_SIZE = 20;
export const PAGE_MAX_SIZE = 100;

/** SELECT-list expression for a row's cursor timestamp (alias.column, UTC, microseconds). */
export function cursorAtSql(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

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

/**
 * WHERE conditions built from constant fragments; every value goes in as a $n parameter. A fragment
 * marks its parameters with `$?`, numbered in the order they are added.
 */
export class SqlConditions {
  readonly values: unknown[] = [];
  private readonly clauses: string[] = [];

  add(fragment: string, ...params: unknown[]): this {
    let text = fragment;
    for (const param of params) {
      this.values.push(param);
      text = text.replace('$?', `$${this.values.length}`);
    }
    if (text.includes('$?')) throw new Error(`fragment has more placeholders than parameters: ${fragment}`);
    this.clauses.push(text);
    return this;
  }

  /** The next parameter's placeholder, for LIMIT and the like. */
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  where(): string {
    return this.clauses.length === 0 ? '' : `WHERE ${this.clauses.join(' AND ')}`;
  }

  clone(): SqlConditions {
    const copy = new SqlConditions();
    copy.values.push(...this.values);
    copy.clauses.push(...this.clauses);
    return copy;
  }
}

export interface KeysetQuery {
  where: string;
  /** "ASC" for forward pages, "DESC" when paging backwards (rows come back reversed). */
  direction: 'ASC' | 'DESC';
  limit: string;
  values: unknown[];
}

/**
 * A relay connection over rows ordered by (createdAt column, id). `keyColumns` are the SQL
 * expressions of both, e.g. ['d.created_at', 'd.id'], and `idType` the id's SQL type.
 */
export interface KeysetConnection<Row> {
  edges: Array<{ cursor: string; node: Row }>;
  pageInfo: { startCursor: string; endCursor: string; hasPreviousPage: boolean; hasNextPage: boolean };
}

export function keysetConnection<Row extends KeysetRow>(
  args: DefaultConnectionArguments,
  keyColumns: readonly [string, string],
  idType: 'uuid' | 'bigint',
  filters: SqlConditions,
  fetch: (query: KeysetQuery) => Promise<Row[]>,
): Promise<KeysetConnection<Row>> {
  return resolveCursorConnection(
    { args, toCursor: (row) => encodeCursor(row as Row), defaultSize: PAGE_DEFAULT_SIZE, maxSize: PAGE_MAX_SIZE },
    ({ after, before, limit, inverted }) => {
      const conditions = filters.clone();
      const key = `(${keyColumns[0]}, ${keyColumns[1]})`;
      if (after) {
        const cursor = decodeCursor(after);
        conditions.add(`${key} > ($?::timestamptz, $?::${idType})`, cursor.at, cursor.id);
      }
      if (before) {
        const cursor = decodeCursor(before);
        conditions.add(`${key} < ($?::timestamptz, $?::${idType})`, cursor.at, cursor.id);
      }
      const limitParam = conditions.param(limit);
      return fetch({ where: conditions.where(), direction: inverted ? 'DESC' : 'ASC', limit: limitParam, values: conditions.values });
    },
  ) as Promise<KeysetConnection<Row>>;
}
