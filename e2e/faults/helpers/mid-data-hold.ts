// Holds SMTP sessions in the middle of their DATA, so that a fault falls on messages in flight:
// the edge killed with every session mid-message, or PostgreSQL frozen just before every held
// session's accept statement. Once `holdFrom()` says so, each session that reaches the middle of
// a message waits there; after `release()` none is held again, so the sender's retries go through.
import { waitFor } from '../../harness/index.ts';

export interface MidDataHold {
  /** The sender's `midData` hook. */
  midData(): Promise<void>;
  /** Resolves once `count` sessions are held. */
  allHeld(count: number): Promise<void>;
  release(): void;
}

export function holdMidData(holdFrom: () => boolean): MidDataHold {
  let holding = 0;
  let released = false;
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    async midData() {
      if (released || !holdFrom()) return;
      holding += 1;
      await opened;
      holding -= 1;
    },
    async allHeld(count) {
      await waitFor('every session held mid-DATA', () => holding, (held) => held === count, { timeoutMs: 60_000 });
    },
    release() {
      released = true;
      open();
    },
  };
}
