// Which PostgreSQL failures mean "the database is away for now" (seed 001: network maintenance,
// a restart) rather than "this statement is wrong": the former are waited out and retried.
// SQLSTATE class 08 is "connection exception" as a whole (08P01 protocol violation included): the
// connection, not the statement, went wrong.
const TRANSIENT_DB_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '53300',
]);

export function isTransientDbError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  if (code && (TRANSIENT_DB_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|timeout exceeded|Query read timeout|not queryable|Client has encountered a connection error/i.test(message);
}

/** Failures that say nothing against the row itself — deadlock and serialisation (class 40), lock
 *  not available (55), statement or lock timeout / cancel (57014), out of resources (53) — and may
 *  pass on a plain retry. Poison isolation (fail-for-good.ts callers) never takes an item out of the
 *  way for one of these: dropping a bounce because of a deadlock would lose it for nothing. */
export function mayPassOnRetry(error: unknown): boolean {
  if (isTransientDbError(error)) return true;
  const code = (error as { code?: string } | null)?.code ?? '';
  return /^(40|55|53)[0-9A-Z]{3}$/.test(code) || code === '57014';
}
