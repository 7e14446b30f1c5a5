// What to do when accepting a decoded stream command throws (seed 003: no poison entry may block
// the stream; seed 001: a database outage is waited out, never a reason to throw commands away):
//   - PostgreSQL refused the values (SQLSTATE class 22 data exception, 23 constraint): retrying
//     cannot help — quarantine now as invalid_field;
//   - the database is away (connection errors, shutdown, pool timeouts): retry, without counting —
//     the entry stays pending however long the outage lasts;
//   - anything else (a trigger raising, a bug, a statement timeout): retry a few times — it may be
//     a blip nobody classified — and after maxFailures handlings quarantine it as handling_failed
//     with the error as detail, so the entries behind it flow again.
// The counts live as long as the stream consumer, across restarts of its loop (each failure
// restarts the loop, which re-reads its own pending entries first); an engine that dies loses them,
// and whoever takes the entry over starts counting again: a few more tries, never a blocked stream.
import { isTransientDbError } from '../queue/db-errors.ts';

/** Remembered entries at most: only entries failing right now are, so this is never reached
 *  unless entries vanish while failing (Redis restarted empty). */
const MAX_TRACKED = 1_000;

export type HandlingDecision = { action: 'retry' } | { action: 'quarantine'; code: 'invalid_field' | 'handling_failed'; detail: string };

export interface HandlingFailures {
  /** Accepting entry `entryId` threw `error`: retry it (the caller rethrows) or quarantine it. */
  decide(entryId: string, error: unknown): HandlingDecision;
  /** The entry was acknowledged (accepted or quarantined): forget its failures. */
  forget(entryId: string): void;
  /** Failed handlings counted for the entry so far (logs, tests). */
  count(entryId: string): number;
}

function isDataError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code ?? '';
  return /^2[23][0-9A-Z]{3}$/.test(code);
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: string }).code;
  return code ? `${error.message} (SQLSTATE ${code})` : error.message;
}

export function createHandlingFailures(maxFailures: number): HandlingFailures {
  const counts = new Map<string, number>();
  return {
    decide(entryId, error) {
      if (isDataError(error)) return { action: 'quarantine', code: 'invalid_field', detail: `PostgreSQL refused a value: ${describe(error)}` };
      if (isTransientDbError(error)) return { action: 'retry' };
      const failures = (counts.get(entryId) ?? 0) + 1;
      if (failures >= maxFailures) {
        counts.delete(entryId);
        return { action: 'quarantine', code: 'handling_failed', detail: `accepting the command failed ${failures} times; last: ${describe(error)}` };
      }
      if (!counts.has(entryId) && counts.size >= MAX_TRACKED) {
        const oldest = counts.keys().next().value;
        if (oldest !== undefined) counts.delete(oldest);
      }
      counts.set(entryId, failures);
      return { action: 'retry' };
    },
    forget(entryId) {
      counts.delete(entryId);
    },
    count(entryId) {
      return counts.get(entryId) ?? 0;
    },
  };
}
