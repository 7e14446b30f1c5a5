// What to do when accepting a decoded stream command throws (silent-encoding-change: no poison entry may block
// the stream; dead-runner: a database outage is waited out, never a reason to throw commands away):
//   - PostgreSQL refused the values (SQLSTATE class 22 data exception, 23 constraint): retrying
//     cannot help — quarantine now as invalid_field;
//   - the database is away (connection errors, shutdown, pool timeouts) or busy (a statement
//     timeout, a lock wait, a deadlock, a serialization failure: isRetryableDbError): retry — the
//     entry stays pending however long it lasts. Busy is not the command's fault: an operator's
//     VACUUM FULL or LOCK TABLE on mail.deliveries for longer than five statement timeouts used to
//     quarantine the command at the head of the stream, which the producer had been told was
//     accepted (e2e/faults/postgres-contended);
//   - anything else (a trigger raising, a bug): retry a few times — it may be a blip nobody
//     classified — and once the entry has been delivered maxFailures times quarantine it as
//     handling_failed with the error as detail, so the entries behind it flow again.
// The count is Redis's own: the times-delivered of the pending entry (XPENDING), which every
// re-read of a consumer's history and every XAUTOCLAIM increments. It survives a restart of the
// engine and a takeover by another consumer, which an in-memory count did not (a poison entry
// could then come back a few more times with every restart). The price: deliveries during an
// outage count too, so an entry that waited out an outage is quarantined on its first other failure.

import { describeDbError, isRetryableDbError } from '@postern/shared';

export type HandlingDecision = { action: 'retry' } | { action: 'quarantine'; code: 'invalid_field' | 'handling_failed'; detail: string };

function isDataError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code ?? '';
  return /^2[23][0-9A-Z]{3}$/.test(code);
}

/** Accepting an entry delivered `timesDelivered` times (its XPENDING count) threw `error`: retry it
 *  (the caller rethrows, the entry stays pending) or quarantine it. */
export function decideHandling(error: unknown, timesDelivered: number, maxFailures: number): HandlingDecision {
  if (isDataError(error)) return { action: 'quarantine', code: 'invalid_field', detail: `PostgreSQL refused a value: ${describeDbError(error)}` };
  if (isRetryableDbError(error)) return { action: 'retry' };
  if (timesDelivered >= maxFailures) {
    return { action: 'quarantine', code: 'handling_failed', detail: `accepting the command failed ${timesDelivered} times; last: ${describeDbError(error)}` };
  }
  return { action: 'retry' };
}
