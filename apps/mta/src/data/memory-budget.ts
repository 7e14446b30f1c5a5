// How many bytes of DATA the edge holds in memory for messages in flight, across all sessions.
// Each message is held until its commit (it goes to PostgreSQL as one bytea), so without a budget
// the worst case is MAIL_MTA_MAX_CLIENTS x MAIL_MTA_MAX_MESSAGE_SIZE (200 x 25 MiB, about 5 GiB).
// A message claims its bytes as they arrive; one that would push the total past the budget stops
// being kept (the rest is drained) and gets 452 4.3.1 after the final dot: the sender keeps it and
// retries. The counted bytes are the ones received; the copies made at commit time (the payload
// with its trace header, the driver's write buffer) come on top, for the duration of the commit.

/** One message's claim on the budget: grows chunk by chunk, released once, whatever happened. */
export interface MemoryReservation {
  /** Claims `bytes` more; false (and nothing claimed) when they do not fit. */
  tryGrow(bytes: number): boolean;
  /** Gives back everything claimed; idempotent. Nothing can be claimed after it. */
  release(): void;
}

export class DataMemoryBudget {
  readonly limitBytes: number;
  private held = 0;
  private readonly onChange: (heldBytes: number) => void;

  constructor(limitBytes: number, onChange: (heldBytes: number) => void = () => {}) {
    this.limitBytes = limitBytes;
    this.onChange = onChange;
  }

  get heldBytes(): number {
    return this.held;
  }

  get availableBytes(): number {
    return Math.max(0, this.limitBytes - this.held);
  }

  reserve(): MemoryReservation {
    let claimed = 0;
    let released = false;
    return {
      tryGrow: (bytes) => {
        if (released || this.held + bytes > this.limitBytes) return false;
        this.held += bytes;
        claimed += bytes;
        this.onChange(this.held);
        return true;
      },
      release: () => {
        if (released) return;
        released = true;
        this.held -= claimed;
        claimed = 0;
        this.onChange(this.held);
      },
    };
  }
}
