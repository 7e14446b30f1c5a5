// Which PostgreSQL failures mean "the database is away for now" (seed 001: network maintenance,
// a restart) rather than "this statement is wrong": the former are waited out and retried.
const TRANSIENT_DB_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', '53300']);

export function isTransientDbError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  if (code && TRANSIENT_DB_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|timeout exceeded|Query read timeout|not queryable|Client has encountered a connection error/i.test(message);
}
