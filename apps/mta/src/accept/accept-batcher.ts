// Group commit for the edge's accepts. Every message that finishes DATA is handed here and its
// session waits for the COMMIT that contains it — "250 queued" only after that — but messages
// finishing at about the same time share the commit: one statement, one transaction, one WAL flush
// (accept-message.ts commitAccepts) instead of one each. There is no timer: a message arriving
// while a batch slot is free goes out after the current turn of the event loop (setImmediate: with
// the others whose bytes came in the same turn; an idle edge adds no wait); the ones arriving while
// every slot is committing wait for the next free slot and go out together, up to maxBatch
// messages or maxBatchBytes of payload (the first one always goes, however large).
//
// Each message still gets its own truthful reply:
//   - committed: every message of the batch is stored; each session answers 250;
//   - the statement rolled back for something a message can cause (a constraint, bad input) and the
//     batch had more than one message: each is committed again alone, so one poison message gets its
//     own 451 and the others their 250 — nothing is lost and nothing is answered for another;
//   - rolled back for the database (cancel, timeout, lock, connection — isRetryableDbError), or
//     settled as not stored: the same error for each (451; nothing of the batch was stored);
//   - undecided when the edge stopped (UndecidedAcceptError): each session is closed without a reply;
//   - still queued when the edge stops: not started, the 451 is the truth.
import { AsyncResource } from 'node:async_hooks';
import { childLogger, isRetryableDbError, type Logger } from '@postern/shared';
import type { AcceptedMessage, PreparedAccept } from './accept-message.ts';
import { UndecidedAcceptError } from './accept-message.ts';
import { isStatementRolledBack } from './statement-outcome.ts';

export interface AcceptBatcherOptions {
  /** One statement for the batch (commitAccepts): resolves after its COMMIT. */
  commit(batch: readonly PreparedAccept[]): Promise<void>;
  /** Messages per statement at most. */
  maxBatch: number;
  /** Payload bytes per statement at most (a larger message goes alone). */
  maxBatchBytes: number;
  /** Statements in flight at once (each on its own connection). */
  maxInFlight: number;
  logger: Logger;
  /** Aborted when the edge stops: what is still queued is refused as not started. */
  signal?: AbortSignal;
  /** Told the size of every statement sent (the retries of a poison batch too). */
  onBatch?: (size: number) => void;
}

export interface AcceptBatcher {
  /** Resolves after the COMMIT that stored the message; rejects as described above. */
  accept(prepared: PreparedAccept): Promise<AcceptedMessage>;
  /** Messages queued or in a statement not yet decided. */
  readonly pending: number;
}

interface Waiting {
  prepared: PreparedAccept;
  /** Runs `fn` in the async context the message was handed over in (its trace): the statement of
   *  a batch runs in its first message's, so its span lands in that message's trace. */
  within: (fn: () => Promise<void>) => Promise<void>;
  resolve: (accepted: AcceptedMessage) => void;
  reject: (error: unknown) => void;
}

export function createAcceptBatcher(options: AcceptBatcherOptions): AcceptBatcher {
  const log = childLogger(options.logger, { component: 'accept-batcher' });
  let queue: Waiting[] = [];
  let inFlight = 0;
  let committing = 0;
  let scheduled: NodeJS.Immediate | null = null;

  const stopped = () => {
    const waiting = queue;
    queue = [];
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    for (const entry of waiting) entry.reject(new Error('the edge is stopping: the accept was not started'));
  };
  options.signal?.addEventListener('abort', stopped, { once: true });

  /** The next batch from the head of the queue, within the bounds. */
  function take(): Waiting[] {
    let bytes = 0;
    let count = 0;
    for (const entry of queue) {
      const size = entry.prepared.message.raw.length;
      if (count > 0 && (count >= options.maxBatch || bytes + size > options.maxBatchBytes)) break;
      bytes += size;
      count += 1;
    }
    return queue.splice(0, count);
  }

  function pump(): void {
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const batch = take();
      inFlight += 1;
      committing += batch.length;
      void write(batch)
        .catch((error: unknown) => {
          // write() settles every message itself; this is a bug's last net, so none hangs.
          log.error({ err: error, messages: batch.length }, 'accept batch failed unexpectedly');
          for (const entry of batch) entry.reject(error);
        })
        .finally(() => {
          inFlight -= 1;
          committing -= batch.length;
          pump();
        });
    }
  }

  async function write(batch: Waiting[]): Promise<void> {
    options.onBatch?.(batch.length);
    try {
      const first = batch[0] as Waiting;
      await first.within(() => options.commit(batch.map((entry) => entry.prepared)));
    } catch (error) {
      if (error instanceof UndecidedAcceptError) {
        for (const entry of batch) entry.reject(new UndecidedAcceptError(entry.prepared.message.id));
        return;
      }
      if (batch.length > 1 && isStatementRolledBack(error) && !isRetryableDbError(error)) {
        // Nothing of the batch was stored, and one of its messages may be why: each alone now.
        log.warn({ err: error, messages: batch.length }, 'a batch of accepts rolled back; committing its messages one by one');
        await Promise.all(batch.map((entry) => write([entry])));
        return;
      }
      for (const entry of batch) entry.reject(error);
      return;
    }
    for (const entry of batch) entry.resolve({ messageId: entry.prepared.message.id, deliveryIds: entry.prepared.deliveryIds });
  }

  return {
    accept(prepared) {
      return new Promise<AcceptedMessage>((resolve, reject) => {
        if (options.signal?.aborted) {
          reject(new Error('the edge is stopping: the accept was not started'));
          return;
        }
        queue.push({ prepared, resolve, reject, within: AsyncResource.bind((fn: () => Promise<void>) => fn()) });
        scheduled ??= setImmediate(() => {
          scheduled = null;
          pump();
        });
      });
    },
    get pending() {
      return queue.length + committing;
    },
  };
}
