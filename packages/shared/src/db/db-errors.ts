// Which PostgreSQL failures mean "try the same statement again later" rather than "this statement
// is wrong". Two questions, two answers:
//
// isTransientDbError — the database is away for now (dead-runner: network maintenance, a restart):
//   SQLSTATE class 08 "connection exception" as a whole (08P01 included: the connection, not the
//   statement, went wrong), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
//   class 53 (insufficient resources: too many connections, out of memory, disk full), 25006
//   read-only transaction (the server takes no writes now: default_transaction_read_only on for a
//   maintenance freeze, or a standby behind an endpoint that should name the primary), a server
//   refused because it is a standby (NOT_PRIMARY_CODE, pool.ts), any error of severity FATAL or
//   PANIC (the server ended the session, whatever the statement was: on a full disk a new
//   connection fails with FATAL XX000 "could not write init file" when the relation cache's init
//   file must be written again, e2e/faults/postgres-disk-full), the driver's own socket and pool
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
// isDiskFullDbError — the away case an operator must act on rather than wait out: 53100 disk_full,
//   what PostgreSQL says when a file it writes cannot grow (ENOSPC: `could not extend file ...: No
//   space left on device` for a table or index, `could not write to file "pg_wal/xlogtemp..."`
//   with severity PANIC for its WAL). Still away (the same write lands once space is freed); the
//   edge answers it 452 4.3.1 rather than its generic 451, and the readiness probe names it.
//
// isWriteRefusedDbError — the server answers and reads, but takes no write now: its disk full
//   (53100) or read-only (25006). A write that is only a side effect of a read (a token's last
//   use) is skipped for it rather than failing the read.
//
// describeDbError — the failure as the text recorded with an item taken out of the way (a
// quarantined command, an outcome recorded bare, a dead letter without its bounce).
import { isCertificateError } from '../net/certificate-errors.ts';

/** The code of the error a new connection fails with when the server is a standby (pool.ts). */
export const NOT_PRIMARY_CODE = 'POSTERN_NOT_PRIMARY';

const DISK_FULL_CODE = '53100';
const READ_ONLY_CODE = '25006';
const AWAY_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', READ_ONLY_CODE, NOT_PRIMARY_CODE,
]);
const AWAY_CLASSES = /^(08|28|53)[0-9A-Z]{3}$/;
const CONTENTION_CODES = new Set(['57014']);
const CONTENTION_CLASSES = /^(40|55)[0-9A-Z]{3}$/;

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

/** The server ended the session (its severity; localised, so a server speaking another language
 *  is classified by its code alone). */
function endedSession(error: unknown): boolean {
  const severity = (error as { severity?: unknown } | null)?.severity;
  return severity === 'FATAL' || severity === 'PANIC';
}

export function isTransientDbError(error: unknown): boolean {
  const code = codeOf(error);
  if (code && (AWAY_CODES.has(code) || AWAY_CLASSES.test(code))) return true;
  if (endedSession(error) || isCertificateError(error)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|timeout exceeded|Query read timeout|not queryable|Client has encountered a connection error|The server does not support SSL connections/i.test(message);
}

/** SQLSTATE 53100: PostgreSQL could not write a file because its disk is full. */
export function isDiskFullDbError(error: unknown): boolean {
  return codeOf(error) === DISK_FULL_CODE;
}

export function isWriteRefusedDbError(error: unknown): boolean {
  const code = codeOf(error);
  return code === DISK_FULL_CODE || code === READ_ONLY_CODE;
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
