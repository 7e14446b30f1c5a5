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
