// Every status change of a delivery, as one interface: the seam through which the engine's
// scheduler, attempt workers, completion batcher, lease keeper and lease reclaim change deliveries
// (apps/core), so each can be tested with the lifecycle faked, and the one place to read what can
// happen to a delivery (graphile-worker keeps its job state changes together the same way). Each
// operation is a statement of this folder, bound here to a pool or, inside transaction(), to one
// connection. The API calls the same statements as functions (cancel, requeue), in transactions
// of its own with its reads.
//
//   queued|retrying -> sending                 claim                claim-deliveries.ts
//   sending (lease renewed)                    renewLeases          renew-leases.ts
//   sending -> queued|retrying (not started)   release              release-claims.ts
//   sending -> sent|failed|suppressed|
//              retrying|dead_letter            recordOutcomes       record-outcomes.ts (+ bounces)
//   the same, without attempt row and bounce   recordBareOutcome    record-bare-outcome.ts
//   sending -> retrying|dead_letter (expired)  reclaimExpired       reclaim-expired-leases.ts
//   failed|dead_letter: bounce, unbounced      insertBounce,        fail-for-good.ts
//                                              noteUnbounced
//   queued|retrying -> cancelled               cancel               cancel-delivery.ts
//   dead_letter -> queued                      requeueDeadLetters   requeue-dead-letters.ts
import type { Queryable } from '../aliases/index.ts';
import { type Pool, withTransaction } from '../db/pool.ts';
import { cancelDelivery } from './cancel-delivery.ts';
import { type ClaimedDelivery, claimDueDeliveries } from './claim-deliveries.ts';
import { type BounceToStore, insertBounce, noteUnbounced } from './fail-for-good.ts';
import { loadMessagePayload, type MessagePayload, type PayloadReadOptions } from './load-payload.ts';
import { expiredLeaseIds, type ReclaimedDelivery, reclaimExpiredLeases } from './reclaim-expired-leases.ts';
import { type BareOutcome, recordBareOutcome } from './record-bare-outcome.ts';
import { type OutcomeToRecord, recordLateOutcomes, recordOutcomes } from './record-outcomes.ts';
import { releaseClaims } from './release-claims.ts';
import { type HeldLease, renewLeases } from './renew-leases.ts';
import { type RequeueRequest, requeueDeadLetters } from './requeue-dead-letters.ts';

/** What recordOutcomes committed: the deliveries recorded, and how many bounces went with them. */
export interface RecordedOutcomes {
  recorded: Set<string>;
  bounces: number;
}

export interface DeliveryLifecycle {
  /** Up to `limit` due deliveries, leased to `workerId` for `leaseMs`. */
  claim(workerId: string, limit: number, leaseMs: number): Promise<ClaimedDelivery[]>;
  /** Pushes the leases forward; returns the ids still held (the others were lost). */
  renewLeases(workerId: string, held: readonly HeldLease[], leaseMs: number): Promise<Set<string>>;
  /** Gives back claims never started; returns how many. */
  release(workerId: string, deliveryIds: readonly string[]): Promise<number>;
  /**
   * The outcomes still under this engine's lease, then — only if some lease was lost, an extra round
   * trip the common path never pays — the late ones nobody has started again, and the bounces of
   * those recorded: one commit (a single statement when there is no bounce).
   */
  recordOutcomes(workerId: string, outcomes: readonly OutcomeToRecord[]): Promise<RecordedOutcomes>;
  /** True if recorded, false if the lease had been lost. */
  recordBareOutcome(workerId: string, outcome: BareOutcome): Promise<boolean>;
  /** Takes back up to `limit` expired leases but `liveIds` (all, or `only` these); returns them. */
  reclaimExpired(
    limit: number,
    maxAttempts: number,
    leaseMs: number,
    liveIds?: readonly string[],
    only?: readonly string[] | null,
  ): Promise<ReclaimedDelivery[]>;
  /** The deliveries a reclaim would take back, oldest lease first, but those in `except`. */
  expiredLeaseIds(limit: number, except?: readonly string[]): Promise<string[]>;
  insertBounce(bounce: BounceToStore): Promise<string>;
  noteUnbounced(deliveryId: string, reason: string): Promise<void>;
  /** Not a status change: the accepted message an attempt relays and a bounce quotes. */
  loadPayload(messageId: string, options?: PayloadReadOptions): Promise<MessagePayload | null>;
  cancel(deliveryId: string, reason: string): Promise<boolean>;
  requeueDeadLetters(request: RequeueRequest): Promise<string[]>;
  /** `work` in one transaction: every operation of `tx` runs on its connection. */
  transaction<T>(work: (tx: DeliveryLifecycle) => Promise<T>): Promise<T>;
}

/** Runs `work` in one transaction, on that transaction's connection. */
type InTransaction = <T>(work: (db: Queryable) => Promise<T>) => Promise<T>;

/** The lifecycle on `pool`: each operation is its own statement, transaction() takes a connection. */
export function createDeliveryLifecycle(pool: Pool): DeliveryLifecycle {
  return bind(pool, (work) => withTransaction(pool, work));
}

/** The outcomes still under the lease, then the late ones among the rest (record-outcomes.ts). */
async function recordWithLate(db: Queryable, workerId: string, outcomes: readonly OutcomeToRecord[]): Promise<Set<string>> {
  const recorded = await recordOutcomes(db, workerId, outcomes);
  const lost = outcomes.filter((outcome) => !recorded.has(outcome.deliveryId));
  if (lost.length > 0) for (const id of await recordLateOutcomes(db, workerId, lost)) recorded.add(id);
  return recorded;
}

function bind(db: Queryable, inTransaction: InTransaction): DeliveryLifecycle {
  return {
    claim: (workerId, limit, leaseMs) => claimDueDeliveries(db, workerId, limit, leaseMs),
    renewLeases: (workerId, held, leaseMs) => renewLeases(db, workerId, held, leaseMs),
    release: (workerId, deliveryIds) => releaseClaims(db, workerId, deliveryIds),
    async recordOutcomes(workerId, outcomes) {
      // One statement is its own transaction: no BEGIN/COMMIT round trips on the common path.
      if (!outcomes.some((outcome) => outcome.bounce)) return { recorded: await recordWithLate(db, workerId, outcomes), bounces: 0 };
      return inTransaction(async (client) => {
        const recorded = await recordWithLate(client, workerId, outcomes);
        let bounces = 0;
        for (const outcome of outcomes) {
          if (!outcome.bounce || !recorded.has(outcome.deliveryId)) continue;
          await insertBounce(client, outcome.bounce);
          bounces += 1;
        }
        return { recorded, bounces };
      });
    },
    recordBareOutcome: (workerId, outcome) => recordBareOutcome(db, workerId, outcome),
    reclaimExpired: (limit, maxAttempts, leaseMs, liveIds = [], only = null) => reclaimExpiredLeases(db, limit, maxAttempts, leaseMs, liveIds, only),
    expiredLeaseIds: (limit, except = []) => expiredLeaseIds(db, limit, except),
    insertBounce: (bounce) => insertBounce(db, bounce),
    noteUnbounced: (deliveryId, reason) => noteUnbounced(db, deliveryId, reason),
    loadPayload: (messageId, options) => loadMessagePayload(db, messageId, options),
    cancel: (deliveryId, reason) => cancelDelivery(db, deliveryId, reason),
    requeueDeadLetters: (request) => requeueDeadLetters(db, request),
    // Inside, the connection is already in the transaction: a nested one is the same transaction.
    transaction: (work) => inTransaction((client) => work(bind(client, (inner) => inner(client)))),
  };
}
