// Group commit for attempt outcomes. A worker that knows how its attempt ended hands the outcome
// here and waits for the COMMIT that contains it — durable before the worker moves on, as before —
// but the outcomes of all workers finishing at about the same time share that commit: one
// set-based statement (sql/record-outcomes.ts) and one WAL flush for the whole batch, instead of
// one per delivery. A batch is written when it is full (every worker is waiting on it) or
// flushDelayMs after its first outcome arrived; nobody waits longer than that plus the commit.
//
// Guarded as a single write was: an outcome whose lease was lost is not written, and its worker
// hears `false` — unless nobody has started its delivery again, then the late result replaces the
// reclaim's outcome_unknown (sql/record-late-outcomes.ts). Bounces of the batch's permanent failures are inserted in the same transaction,
// only for the deliveries that were recorded. If the write fails (PostgreSQL away) every worker of
// the batch gets the error and retries as it did before (attempt-worker.ts persist); the deliveries
// stay leased (and renewed: queue/lease-keeper.ts) meanwhile, and a lease that runs out is taken
// back (reclaim-expired-leases.ts). A non-transient failure is retried one outcome at a time, so one
// bad row cannot sink its batch; an outcome that still fails alone is isolated: written again
// through the fail-for-good path without its attempt row and bounce, the refusal recorded as its
// last_error (fail-for-good.ts unrecordableOutcome), and counted. Before, it was thrown back at its
// worker, which restarted, the lease ran out and the reclaim failed on the same bounce on every
// pass.
import { describeDbError, isRetryableDbError, isTransientDbError, type Logger, type Pool, type Queryable, withTransaction } from '@postern/shared';
import { unrecordableOutcome } from '../delivery/fail-for-good.ts';
import { type BounceToStore, insertBounce } from './sql/insert-bounce.ts';
import { recordBareOutcome } from './sql/record-bare-outcome.ts';
import { recordLateOutcomes } from './sql/record-late-outcomes.ts';
import { type Outcome, recordOutcomes } from './sql/record-outcomes.ts';

export interface OutcomeToRecord extends Outcome {
  /** For accepted mail that failed for good: its DSN, queued with the failure. */
  bounce: BounceToStore | null;
}

export interface CompletionBatcherOptions {
  pool: Pool;
  /** The lease holder every outcome of this engine is guarded by. */
  workerId: string;
  /** Write as soon as this many outcomes wait (the number of attempt workers: all of them). */
  maxBatch: number;
  /** Write at most this long after the first outcome of a batch arrived. */
  flushDelayMs: number;
  logger: Logger;
  /** Called after each committed batch (metrics, the benchmark). */
  onCommitted?: (batch: { size: number; recorded: number; skipped: string[]; bounces: number; durationMs: number }) => void;
  /** Called for each outcome isolated (recorded bare, or given up on): mail_poison_items_total. */
  onIsolated?: (reason: 'outcome_recorded_bare' | 'outcome_unrecordable') => void;
}

export interface CompletionBatcher {
  /** Resolves after the COMMIT: true if recorded, false if the lease had been lost (nothing written). */
  record(outcome: OutcomeToRecord): Promise<boolean>;
  /** Outcomes handed over and not yet committed: their workers are free within one commit. */
  readonly awaitingCommit: number;
  /** Called whenever an outcome is handed over (the scheduler may claim ahead for its worker). */
  onRecord(listener: () => void): void;
}

interface Waiting {
  outcome: OutcomeToRecord;
  resolve: (recorded: boolean) => void;
  reject: (error: unknown) => void;
}

/** The outcomes still under this engine's lease, then (only if some lease was lost, an extra round
 *  trip that the common path never pays) the late ones nobody has started again
 *  (sql/record-late-outcomes.ts). */
async function recordWithLate(db: Queryable, workerId: string, outcomes: readonly OutcomeToRecord[]): Promise<Set<string>> {
  const recorded = await recordOutcomes(db, workerId, outcomes);
  const lost = outcomes.filter((outcome) => !recorded.has(outcome.deliveryId));
  if (lost.length > 0) for (const id of await recordLateOutcomes(db, workerId, lost)) recorded.add(id);
  return recorded;
}

async function writeBatch(pool: Pool, workerId: string, outcomes: readonly OutcomeToRecord[]): Promise<{ recorded: Set<string>; bounces: number }> {
  if (!outcomes.some((outcome) => outcome.bounce)) {
    // One statement is its own transaction: no BEGIN/COMMIT round trips on the common path.
    return { recorded: await recordWithLate(pool, workerId, outcomes), bounces: 0 };
  }
  return withTransaction(pool, async (client) => {
    const recorded = await recordWithLate(client, workerId, outcomes);
    let bounces = 0;
    for (const outcome of outcomes) {
      if (!outcome.bounce || !recorded.has(outcome.deliveryId)) continue;
      await insertBounce(client, outcome.bounce);
      bounces += 1;
    }
    return { recorded, bounces };
  });
}

export function createCompletionBatcher(options: CompletionBatcherOptions): CompletionBatcher {
  const log = options.logger.child({ component: 'completion-batcher' });
  let batch: Waiting[] = [];
  let ids = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let writing = 0;
  let onRecord: () => void = () => {};

  async function write(entries: Waiting[]): Promise<void> {
    writing += entries.length;
    try {
      await writeOnce(entries);
    } finally {
      writing -= entries.length;
    }
  }

  async function writeOnce(entries: Waiting[]): Promise<void> {
    const t0 = performance.now();
    let result: { recorded: Set<string>; bounces: number };
    try {
      result = await writeBatch(options.pool, options.workerId, entries.map((entry) => entry.outcome));
    } catch (error) {
      if (isTransientDbError(error)) {
        for (const entry of entries) entry.reject(error);
        return;
      }
      if (entries.length === 1 && isRetryableDbError(error)) {
        // A deadlock or a timeout is not this outcome's fault: its worker retries it as before.
        for (const entry of entries) entry.reject(error);
        return;
      }
      if (entries.length === 1 && entries[0]) {
        await isolate(entries[0], error);
        return;
      }
      log.warn({ err: error, size: entries.length }, 'recording a batch of outcomes failed; recording them one by one');
      await Promise.all(entries.map((entry) => writeOnce([entry])));
      return;
    }
    const skipped = entries.filter((entry) => !result.recorded.has(entry.outcome.deliveryId)).map((entry) => entry.outcome.deliveryId);
    if (skipped.length > 0) {
      log.warn({ deliveryIds: skipped }, 'outcomes not recorded: their lease had been lost (another engine took them back)');
    }
    options.onCommitted?.({
      size: entries.length,
      recorded: result.recorded.size,
      skipped,
      bounces: result.bounces,
      durationMs: performance.now() - t0,
    });
    for (const entry of entries) entry.resolve(result.recorded.has(entry.outcome.deliveryId));
  }

  /** One outcome PostgreSQL refuses even alone: recorded bare, or, if even that fails, handed back
   *  to its worker (whose lease then runs out; the reclaim ends the delivery). */
  async function isolate(entry: Waiting, error: unknown): Promise<void> {
    const { outcome } = entry;
    const bare = unrecordableOutcome(outcome, error);
    try {
      const recorded = await recordBareOutcome(options.pool, options.workerId, {
        deliveryId: outcome.deliveryId,
        attemptNumber: outcome.attemptNumber,
        status: bare.status,
        lastError: bare.lastError,
      });
      options.onIsolated?.('outcome_recorded_bare');
      log.error(
        { err: error, deliveryId: outcome.deliveryId, intended: outcome.status, recordedAs: bare.status, recorded },
        'an outcome could not be recorded; recorded without its attempt row and bounce, with the refusal as its reason',
      );
      entry.resolve(recorded);
    } catch (bareError) {
      if (!isRetryableDbError(bareError)) {
        options.onIsolated?.('outcome_unrecordable');
        log.error({ err: bareError, deliveryId: outcome.deliveryId, first: describeDbError(error) }, 'an outcome could not be recorded even bare');
      }
      entry.reject(bareError);
    }
  }

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    const entries = batch;
    batch = [];
    ids = new Set();
    if (entries.length > 0) void write(entries);
  }

  return {
    record(outcome) {
      return new Promise<boolean>((resolve, reject) => {
        if (ids.has(outcome.deliveryId)) {
          // Two outcomes for one lease in one statement would be a bug upstream; refuse the second.
          reject(new Error(`delivery ${outcome.deliveryId} already has an outcome waiting to be recorded`));
          return;
        }
        batch.push({ outcome, resolve, reject });
        ids.add(outcome.deliveryId);
        if (batch.length >= options.maxBatch) flush();
        else timer ??= setTimeout(flush, options.flushDelayMs);
        onRecord();
      });
    },
    get awaitingCommit() {
      return batch.length + writing;
    },
    onRecord(listener) {
      onRecord = listener;
    },
  };
}
