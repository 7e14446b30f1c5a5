// Remembers, per edge process, the accepts in flight and those committed recently, by a
// fingerprint of the transaction (envelope + SHA-256 of the DATA bytes). A sender that gave up on
// an undecided accept (PostgreSQL hung longer than its timeout) and retries the same message gets
// the first queue id instead of a second copy: it waits for the first accept's real outcome, and
// after a commit it is answered 250 from here for `windowMs`. A first accept known to have failed
// is forgotten at once, so the retry stores the message itself.
import { createHash } from 'node:crypto';
import type { AcceptedMessage } from './accept-message.ts';

export interface TransactionFacts {
  envelopeFrom: string;
  envelopeTo: readonly string[];
  smtpUtf8: boolean;
  bodyType: string | null;
  /** The DATA bytes as received, without the edge's trace header. */
  data: Uint8Array;
}

/** SHA-256 over the envelope and the bytes; each field length-prefixed so no two splits collide. */
export function transactionFingerprint(facts: TransactionFacts): string {
  const hash = createHash('sha256');
  const field = (value: string) => {
    const bytes = Buffer.from(value, 'utf8');
    hash.update(`${bytes.length}:`);
    hash.update(bytes);
  };
  field(facts.envelopeFrom);
  field(String(facts.envelopeTo.length));
  for (const to of facts.envelopeTo) field(to);
  field(facts.smtpUtf8 ? 'smtputf8' : '');
  field(facts.bodyType ?? '');
  hash.update(facts.data);
  return hash.digest('hex');
}

interface Entry {
  pending: Promise<AcceptedMessage> | null;
  committed: AcceptedMessage | null;
  committedAt: number;
}

export interface LedgerOptions {
  windowMs: number;
  /** Committed entries kept at most (the oldest forgotten first); pending ones are never dropped. */
  maxEntries: number;
  /** An error after which the first accept may still commit (the edge stopped waiting for it):
   *  a transaction waiting on it must not store the message itself, it gets the same error. */
  isUndecided?: (error: unknown) => boolean;
  now?: () => number;
}

export interface LedgerOutcome extends AcceptedMessage {
  /** True when this transaction was answered with an earlier accept of the same message. */
  duplicate: boolean;
}

export class AcceptLedger {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly options: LedgerOptions;

  constructor(options: LedgerOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Runs `accept` unless the same transaction is in flight or committed within the window. */
  async accept(fingerprint: string, accept: () => Promise<AcceptedMessage>): Promise<LedgerOutcome> {
    for (;;) {
      this.forgetExpired();
      const entry = this.entries.get(fingerprint);
      if (entry?.committed) return { ...entry.committed, duplicate: true };
      if (entry?.pending) {
        try {
          return { ...(await entry.pending), duplicate: true };
        } catch (error) {
          if (this.options.isUndecided?.(error)) throw error;
          // The first one is known not stored: try again, maybe to store it.
          continue;
        }
      }
      return { ...(await this.run(fingerprint, accept)), duplicate: false };
    }
  }

  private async run(fingerprint: string, accept: () => Promise<AcceptedMessage>): Promise<AcceptedMessage> {
    const entry: Entry = { pending: null, committed: null, committedAt: 0 };
    const pending = accept();
    entry.pending = pending;
    this.entries.set(fingerprint, entry);
    try {
      const accepted = await pending;
      // Re-inserted so that Map order is commit order: the oldest commit is always first.
      this.entries.delete(fingerprint);
      this.entries.set(fingerprint, { pending: null, committed: accepted, committedAt: this.now() });
      return accepted;
    } catch (error) {
      this.entries.delete(fingerprint);
      throw error;
    }
  }

  private forgetExpired(): void {
    const horizon = this.now() - this.options.windowMs;
    for (const [key, entry] of this.entries) {
      if (entry.pending) continue;
      if (entry.committedAt > horizon && this.entries.size <= this.options.maxEntries) break;
      this.entries.delete(key);
    }
  }
}
