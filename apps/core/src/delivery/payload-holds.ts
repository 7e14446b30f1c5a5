// The messages of relayed mail an engine holds for its attempts, bounded in bytes. An attempt of
// relayed mail holds its message from the read to the end of the attempt: the send, a signature or
// ARC set made over it, a bounce quoting it, the wait for its outcome's commit. Without a bound the
// engine held as many messages as it had attempts under way (MAIL_ATTEMPT_WORKER_CONCURRENCY, and
// two uncommitted outcomes per worker), each read as hex text twice its size: 8 workers on
// messages of 25 MiB peaked at 610-663 MiB, and 32 under a 512 MiB memory limit ground to a halt,
// reads so slow that their workers were abandoned and the lease reclaim spent their attempts (0 of
// 40 sent in 400 s; docs/core.md, "Large messages").
//  - A budget (MAIL_PAYLOAD_MEMORY_BUDGET): a message is read only once its size fits in what the
//    others leave; otherwise its attempt waits, first come first served (a large message is not
//    overtaken for ever by small ones). The size is read first (the TOAST header, not the bytes:
//    packages/shared load-payload.ts). A message larger than the whole budget is read when nothing
//    else is held: it goes alone rather than never.
//  - One read per message: the deliveries of one message to several recipients, when their
//    attempts overlap, share the one read and its bytes (charged once), which are given back when
//    the last of them ends.
// The attempt beats its worker's heartbeat while it waits (attempt-worker.ts): waiting for memory
// is not a stall.
import { type MessagePayload, type PayloadReadOptions, prometheus, type Registry } from '@postern/shared';

export interface HeldPayload {
  payload: MessagePayload;
  /** Gives the bytes back (once: later calls do nothing). */
  release(): void;
}

export interface PayloadHolds {
  /** The message, held until release(); null if it is gone (purged, deleted). */
  hold(messageId: string): Promise<HeldPayload | null>;
  /** Bytes of messages held (and being read) now. */
  readonly bytesHeld: number;
  /** Reads waiting for the budget. */
  readonly waiting: number;
  readonly budgetBytes: number;
  /** Holds that joined a read of the same message under way or done, instead of reading it again. */
  readonly shared: number;
}

interface Read {
  payload: Promise<MessagePayload | null>;
  /** Attempts holding it or waiting for it. */
  holders: number;
  /** Bytes taken from the budget for it (0 until its size fitted). */
  bytes: number;
}

export function createPayloadHolds(options: {
  load(messageId: string, read: PayloadReadOptions): Promise<MessagePayload | null>;
  budgetBytes: number;
}): PayloadHolds {
  const { budgetBytes } = options;
  let held = 0;
  let shared = 0;
  const waiters: Array<{ bytes: number; admit: () => void }> = [];
  const reads = new Map<string, Read>();

  const fits = (bytes: number) => held === 0 || held + bytes <= budgetBytes;
  const take = (bytes: number): Promise<void> => {
    if (waiters.length === 0 && fits(bytes)) {
      held += bytes;
      return Promise.resolve();
    }
    return new Promise((admit) => waiters.push({ bytes, admit }));
  };
  const give = (bytes: number) => {
    held -= bytes;
    // In order: the first waiter that does not fit holds back those behind it.
    while (waiters.length > 0 && fits((waiters[0] as { bytes: number }).bytes)) {
      const next = waiters.shift() as { bytes: number; admit: () => void };
      held += next.bytes;
      next.admit();
    }
  };
  const leave = (messageId: string, read: Read) => {
    read.holders -= 1;
    if (read.holders > 0) return;
    if (reads.get(messageId) === read) reads.delete(messageId);
    const bytes = read.bytes;
    read.bytes = 0;
    if (bytes > 0) give(bytes);
  };

  return {
    async hold(messageId) {
      let read = reads.get(messageId);
      if (read) shared += 1;
      else {
        const fresh: Read = { payload: Promise.resolve(null), holders: 0, bytes: 0 };
        fresh.payload = options.load(messageId, {
          beforeRead: async (sizeBytes) => {
            await take(sizeBytes);
            fresh.bytes = sizeBytes;
          },
        });
        // A failed or empty read is not shared with later holds: they read again.
        fresh.payload.then(
          (payload) => {
            if (!payload && reads.get(messageId) === fresh) reads.delete(messageId);
          },
          () => {
            if (reads.get(messageId) === fresh) reads.delete(messageId);
          },
        );
        reads.set(messageId, fresh);
        read = fresh;
      }
      read.holders += 1;
      const current = read;
      let payload: MessagePayload | null;
      try {
        payload = await current.payload;
      } catch (error) {
        leave(messageId, current);
        throw error;
      }
      if (!payload) {
        leave(messageId, current);
        return null;
      }
      let released = false;
      return {
        payload,
        release() {
          if (released) return;
          released = true;
          leave(messageId, current);
        },
      };
    },
    get bytesHeld() {
      return held;
    },
    get waiting() {
      return waiters.length;
    },
    get shared() {
      return shared;
    },
    budgetBytes,
  };
}

/** mail_payload_bytes_held, mail_payload_memory_budget_bytes, mail_payload_reads_waiting,
 *  mail_payload_reads_shared_total: read from the holds at each scrape. */
export function registerPayloadGauges(registry: Registry, holds: PayloadHolds): void {
  const { Counter, Gauge } = prometheus;
  new Gauge({
    name: 'mail_payload_bytes_held',
    help: 'Bytes of relayed messages this engine holds (or is reading) for its attempts.',
    registers: [registry],
    collect() {
      this.set(holds.bytesHeld);
    },
  });
  new Gauge({
    name: 'mail_payload_memory_budget_bytes',
    help: 'MAIL_PAYLOAD_MEMORY_BUDGET: the most bytes of relayed messages held at once (a larger message goes alone).',
    registers: [registry],
    collect() {
      this.set(holds.budgetBytes);
    },
  });
  new Gauge({
    name: 'mail_payload_reads_waiting',
    help: 'Attempts of relayed mail waiting for the payload memory budget before reading their message.',
    registers: [registry],
    collect() {
      this.set(holds.waiting);
    },
  });
  let counted = 0;
  new Counter({
    name: 'mail_payload_reads_shared_total',
    help: 'Attempts that shared the read of their message with another attempt of the same message under way.',
    registers: [registry],
    collect() {
      this.inc(holds.shared - counted);
      counted = holds.shared;
    },
  });
}
