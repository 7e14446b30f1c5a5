// Group commit for attempt outcomes. An attempt that knows how it ended hands the outcome here and
// waits for the COMMIT that contains it — durable before its lease is released (its worker sends the
// next delivery meanwhile, loops.ts) — but the
// outcomes of all workers finishing at about the same time share that commit: one set-based
// statement and one WAL flush for the whole batch (the lifecycle's recordOutcomes,
// packages/shared/src/lifecycle/record-outcomes.ts), instead of one per delivery. A batch is
// written when it is full (every worker is waiting on it) or flushDelayMs after its first outcome
// arrived; nobody waits longer than that plus the commit.
//
// Guarded per delivery: an outcome whose lease was lost is not written, and its worker hears
// `false` — unless nobody has started its delivery again, then the late result replaces the
// reclaim's outcome_unknown. Bounces of the batch's permanent failures are inserted in the same
// transaction, only for the deliveries that were recorded. If the write fails because PostgreSQL is
// away every worker of the batch gets the error and retries (attempt-worker.ts persist); the
// deliveries stay leased (and renewed: lease-keeper.ts) meanwhile, and a lease that runs out is
// taken back (reclaim-leases.ts). A failure that is not the database being away is retried one
// outcome at a time, so one bad row cannot sink its batch; an outcome that still fails alone is
// isolated: written again without its attempt row and bounce, the refusal recorded as its
// last_error (the lifecycle's recordBareOutcome), and counted — rather than thrown back at its
// worker, whose lease would run out and whose reclaim would fail on the same bounce on every pass.
import {
  childLogger,
  type DeliveryLifecycle,
  describeDbError,
  isRetryableDbError,
  isTransientDbError,
  type Logger,
  type OutcomeToRecord,
  type RecordedOutcomes,
  unrecordableOutcome,
} from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';

export interface CompletionBatcherOptions {
  /** Where batches are written: recordOutcomes, and recordBareOutcome for an isolated outcome. */
  lifecycle: Pick<DeliveryLifecycle, 'recordOutcomes' | 'recordBareOutcome'>;
  /** The lease holder every outcome of this engine is guarded by. */
  workerId: string;
  /** Write as soon as this many outcomes wait (the number of attempt workers: all of them). */
  maxBatch: number;
  /** Write at most this long after the first outcome of a batch arrived. */
  flushDelayMs: number;
  logger: Logger;
  /** Where each committed batch ('completion:batch') and each isolated outcome ('completion:isolated') is reported. */
  events?: EngineEvents;
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

export function createCompletionBatcher(options: CompletionBatcherOptions): CompletionBatcher {
  const log = childLogger(options.logger, { component: 'completion-batcher' });
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
    let result: RecordedOutcomes;
    try {
      result = await options.lifecycle.recordOutcomes(options.workerId, entries.map((entry) => entry.outcome));
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
    options.events?.emit('completion:batch', {
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
      const recorded = await options.lifecycle.recordBareOutcome(options.workerId, {
        deliveryId: outcome.deliveryId,
        attemptNumber: outcome.attemptNumber,
        status: bare.status,
        lastError: bare.lastError,
      });
      options.events?.emit('completion:isolated', { deliveryId: outcome.deliveryId, reason: 'outcome_recorded_bare' });
      log.error(
        { err: error, deliveryId: outcome.deliveryId, intended: outcome.status, recordedAs: bare.status, recorded },
        'an outcome could not be recorded; recorded without its attempt row and bounce, with the refusal as its reason',
      );
      entry.resolve(recorded);
    } catch (bareError) {
      if (!isRetryableDbError(bareError)) {
        options.events?.emit('completion:isolated', { deliveryId: outcome.deliveryId, reason: 'outcome_unrecordable' });
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
