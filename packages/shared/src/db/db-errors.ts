// Which PostgreSQL failures mean "try the same statement again later" rather than "this statement
// is wrong". Two questions, two answers:
//
// isTransientDbError — the database is away for now (dead-runner: network maintenance, a restart):
//   SQLSTATE class 08 "connection exception" as a whole (08P01 included: the connection, not the
//   statement, went wrong), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
//   class 53 (insufficient resources: too many connections, out of memory, disk full), 25006
//   read-only transaction (the server takes no writes now: default_transaction_read_only on for a
//   maintenance freeze, or a standby behind an endpoint that should name the primary), a server
//   refused because it is a standby (NOT_PRIMARY_CODE, pool.ts), the driver's own socket and pool
//   errors, and a new connection the server or this process refused before any statement: class 28
//   (a login refused: a password rotated, a pg_hba.conf changed) and a server certificate the TLS
//   client refused (net/certificate-errors.ts: a renewal by a CA the DSN does not name, an expiry).
//   Those last until an operator acts, and no statement or command is to blame: taken for the
//   item's fault, a certificate the engines no longer trusted quarantined the stream's head as
//   handling_failed, and its quarantine failing the same way, acknowledged it: commands lost
//   (e2e/faults/postgres-tls). Stream intake waits these out however long they last; anything else counts towards
//   quarantining the entry (apps/core/src/intake/handling-failures.ts). A refused write is the
//   database's state, never the item's: taken for the item's fault, 30 s of it quarantined the
//   stream's head as handling_failed and left sends unrecorded until their leases ran out and they
//   went out again (e2e/faults/postgres-read-only).
//
// isRetryableDbError — the above, or the statement lost a race or ran out of time and will succeed
//   once the other side is done: 57014 query canceled (statement_timeout), 55P03 lock not
//   available (lock_timeout), 40001 serialization failure, 40P01 deadlock detected, 40003
//   statement completion unknown — the whole of classes 40 and 55. Recording an attempt's outcome
//   retries all of these until it lands: a known "sent" thrown away is a duplicate after the lease
//   runs out. And poison isolation (the engine's completion batcher and lease reclaim) never takes
//   an item out of the way for one of these: dropping a bounce because of a deadlock would lose it
//   for nothing.
//
// describeDbError — the failure as the text recorded with an item taken out of the way (a
// quarantined command, an outcome recorded bare, a dead letter without its bounce).
import { isCertificateError } from '../net/certificate-errors.ts';

/** The code of the error a new connection fails with when the server is a standby (pool.ts). */
export const NOT_PRIMARY_CODE = 'POSTERN_NOT_PRIMARY';

const AWAY_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '25006', NOT_PRIMARY_CODE,
]);
const AWAY_CLASSES = /^(08|28|53)[0-9A-Z]{3}$/;
const CONTENTION_CODES = new Set(['57014']);
const CONTENTION_CLASSES = /^(40|55)[0-9A-Z]{3}$/;

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

export function isTransientDbError(error: unknown): boolean {
  const code = codeOf(error);
  if (code && (AWAY_CODES.has(code) || AWAY_CLASSES.test(code))) return true;
  if (isCertificateError(error)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|timeout exceeded|Query read timeout|not queryable|Client has encountered a connection error|The server does not support SSL connections/i.test(message);
}

export function isRetryableDbError(error: unknown): boolean {
  const code = codeOf(error);
  return isTransientDbError(error) || (code !== undefined && (CONTENTION_CODES.has(code) || CONTENTION_CLASSES.test(code)));
}

/** Why an item was taken out of the way, as the text recorded with it: the message and SQLSTATE. */
export function describeDbError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = codeOf(error);
  return code ? `${error.message} (SQLSTATE ${code})` : error.message;
}
