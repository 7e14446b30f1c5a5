// Keyset pagination on (created_at, id): a page starts strictly after the last row the client saw,
// so rows inserted meanwhile never shift a page and no row is seen twice (OFFSET would do both).
// The cursor carries the timestamp at microsecond precision, as PostgreSQL stores it; a JS Date
// would round it to milliseconds and skip or repeat rows created within the same millisecond.
// A cursor names the list it belongs to and is checked against that list before any SQL runs: a
// cursor from another list, a forged one, a truncated one or an id out of the column's range is
// BAD_USER_INPUT (measured before: a deliveries cursor given to `domains` reached PostgreSQL as a
// bigint and came back as INTERNAL_SERVER_ERROR).

import { fillMark, isUuid } from '@postern/shared';
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import { resolveCursorConnection } from '@pothos/plugin-relay';
import { badUserInput } from './bad-user-input.ts';

export const PAGE_DEFAULT_SIZE = 20;
export const PAGE_MAX_SIZE = 100;

export interface KeysetRow {
  id: string;
  cursorAt: string;
}

export interface Cursor {
  at: string;
  id: string;
}

/** The id column's type: what an id in a cursor must be for the SQL cast to succeed. */
export type KeysetIdType = 'bigint' | 'uuid';

export interface CursorSpec {
  /** The list's name, written into its cursors: a cursor of another list is refused. */
  list: string;
  idType: KeysetIdType;
}

/** Longer than any cursor this API writes; refused before decoding. */
const MAX_CURSOR_CHARS = 256;
/** Exactly what the statements' to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') writes. */
const CURSOR_AT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;
const BIGINT_ID = /^[1-9][0-9]{0,18}$/;
const BIGINT_MAX = 9223372036854775807n;

export function encodeCursor(spec: CursorSpec, row: KeysetRow): string {
  return Buffer.from(JSON.stringify([spec.list, row.cursorAt, row.id]), 'utf8').toString('base64url');
}

/** A calendar date and time of day that exist: 2025-02-30 and 24:00 do not. */
function isRealInstant(at: string): boolean {
  const match = CURSOR_AT.exec(at);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0..99 as 1900..1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return (
    year >= 1 &&
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

function idProblem(id: string, idType: KeysetIdType): string | null {
  // A cursor carries the id as PostgreSQL prints it, in lower case: any other spelling was not written here.
  if (idType === 'uuid') return isUuid(id) && id === id.toLowerCase() ? null : 'its id is not a UUID';
  if (!BIGINT_ID.test(id) || BigInt(id) > BIGINT_MAX) return 'its id is not a row id of this list';
  return null;
}

/** The cursor's position in `spec`'s list, or BAD_USER_INPUT saying what is wrong with it. */
export function decodeCursor(cursor: string, spec: CursorSpec, argument = 'after'): Cursor {
  const refuse = (why: string) => badUserInput(`invalid cursor in "${argument}": ${why}; pass back a cursor this list returned`, argument);
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw refuse('not a cursor of this API');
  }
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw refuse('not a cursor of this API (forged or truncated)');
  }
  if (!Array.isArray(decoded) || decoded.length !== 3 || !decoded.every((part) => typeof part === 'string')) {
    throw refuse('not a cursor of this API (forged or truncated)');
  }
  const [list, at, id] = decoded as [string, string, string];
  if (list !== spec.list) throw refuse(`it belongs to another list, not "${spec.list}"`);
  if (!isRealInstant(at)) throw refuse('its timestamp is not one this API writes');
  const problem = idProblem(id, spec.idType);
  if (problem) throw refuse(problem);
  return { at, id };
}

/** Forward pages read ascending; a backward page (`last`/`before`) reads descending, reversed after. */
export type KeysetDirection = 'ASC' | 'DESC';

/**
 * A list query as two constant SQL texts, one per direction, generated at module load from one
 * template (keysetStatements). Their parameters, in this order:
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
export type KeysetStatements = CursorSpec & Readonly<Record<KeysetDirection, string>>;

/**
 * Both directions of a list query from one template whose ORDER BY reads
 * `created_at /*DIRECTION*\/, id /*DIRECTION*\/`. Two plain texts rather than one text with the
 * order chosen by a parameter: a sign times the epoch is never the index's order (PostgreSQL sorts
 * the whole filtered set for every page), and a CASE on a parameter is only while the planner can
 * fold the bound value in, which a generic plan (a named prepared statement) does not. Each text
 * here is an ordinary ORDER BY that walks the (created_at, id) index forwards or backwards and
 * stops at LIMIT under any plan (e2e/api/read-plans.e2e.test.ts). Only ASC and DESC are put in.
 */
export function keysetStatements(spec: CursorSpec, template: string): KeysetStatements {
  return { ...spec, ASC: fillMark(template, 'DIRECTION', 'ASC', 2), DESC: fillMark(template, 'DIRECTION', 'DESC', 2) };
}

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
  // Pothos refuses these too, but with a plain error that reaches the client as INTERNAL_SERVER_ERROR.
  for (const name of ['first', 'last'] as const) {
    const size = args[name];
    if (size !== null && size !== undefined && size < 0) {
      return Promise.reject(badUserInput(`"${name}" must be a non-negative integer, got ${size}`, name));
    }
  }
  return resolveCursorConnection(
    { args, toCursor: (row) => encodeCursor(statements, row as Row), defaultSize: PAGE_DEFAULT_SIZE, maxSize: PAGE_MAX_SIZE },
    ({ after, before, limit, inverted }) => {
      // "" is what Pothos itself gives as endCursor of an empty first page: no cursor, not a forged one.
      const afterCursor = after ? decodeCursor(after, statements, 'after') : null;
      const beforeCursor = before ? decodeCursor(before, statements, 'before') : null;
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
