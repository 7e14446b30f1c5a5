// A DeliveryLifecycle held in memory, for the unit tests of what sits on the seam (completion
// batcher, attempt worker, scheduler): they run without PostgreSQL and see exactly which status
// changes reached the lifecycle. Every outcome is recorded unless its lease is in `lost`; a test
// makes a delivery's outcome refused (a poison row) with refuse(), the bare record too with
// refuseBare(), or the next write fail (the database away) with failNext(). Not built into dist.
import type {
  BareOutcome,
  BounceToStore,
  ClaimedDelivery,
  DeliveryLifecycle,
  MessagePayload,
  OutcomeToRecord,
  RecordedOutcomes,
} from '@postern/shared';

export interface FakeLifecycle extends DeliveryLifecycle {
  /** Every recordOutcomes call's outcomes, in order (failed calls included). */
  readonly batches: OutcomeToRecord[][];
  /** Every recordBareOutcome call, in order. */
  readonly bare: BareOutcome[];
  /** Bounces stored with recorded outcomes, or by insertBounce. */
  readonly bounces: BounceToStore[];
  /** Deliveries whose lease this engine lost: their outcomes are not recorded. */
  readonly lost: Set<string>;
  /** The messages loadPayload finds, by message id. */
  readonly payloads: Map<string, MessagePayload>;
  /** What claim hands out, first come first served. */
  readonly due: ClaimedDelivery[];
  /** Any recordOutcomes call that includes `deliveryId` throws `error`. */
  refuse(deliveryId: string, error: unknown): void;
  /** recordBareOutcome of `deliveryId` throws `error`. */
  refuseBare(deliveryId: string, error: unknown): void;
  /** The next recordOutcomes call throws `error`, whatever it holds. */
  failNext(error: unknown): void;
}

/** An error as pg reports a PostgreSQL failure: its SQLSTATE in `code`. */
export function pgError(code: string, message = `pg ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

export function createFakeLifecycle(): FakeLifecycle {
  const refused = new Map<string, unknown>();
  const bareRefused = new Map<string, unknown>();
  const failures: unknown[] = [];
  const fake: FakeLifecycle = {
    batches: [],
    bare: [],
    bounces: [],
    lost: new Set(),
    payloads: new Map(),
    due: [],
    refuse: (deliveryId, error) => void refused.set(deliveryId, error),
    refuseBare: (deliveryId, error) => void bareRefused.set(deliveryId, error),
    failNext: (error) => void failures.push(error),

    async claim(_workerId, limit) {
      return fake.due.splice(0, limit);
    },
    async renewLeases(_workerId, held) {
      return new Set(held.map((lease) => lease.id).filter((id) => !fake.lost.has(id)));
    },
    async release(_workerId, deliveryIds) {
      return deliveryIds.length;
    },
    async recordOutcomes(_workerId, outcomes): Promise<RecordedOutcomes> {
      fake.batches.push([...outcomes]);
      if (failures.length > 0) throw failures.shift();
      for (const outcome of outcomes) if (refused.has(outcome.deliveryId)) throw refused.get(outcome.deliveryId);
      const recorded = new Set(outcomes.map((outcome) => outcome.deliveryId).filter((id) => !fake.lost.has(id)));
      let bounces = 0;
      for (const outcome of outcomes) {
        if (!outcome.bounce || !recorded.has(outcome.deliveryId)) continue;
        fake.bounces.push(outcome.bounce);
        bounces += 1;
      }
      return { recorded, bounces };
    },
    async recordBareOutcome(_workerId, outcome) {
      fake.bare.push(outcome);
      if (bareRefused.has(outcome.deliveryId)) throw bareRefused.get(outcome.deliveryId);
      return !fake.lost.has(outcome.deliveryId);
    },
    async reclaimExpired() {
      return [];
    },
    async expiredLeaseIds() {
      return [];
    },
    async insertBounce(bounce) {
      fake.bounces.push(bounce);
      return `bounce-${fake.bounces.length}`;
    },
    async noteUnbounced() {},
    async loadPayload(messageId, read) {
      const payload = fake.payloads.get(messageId);
      if (!payload) return null;
      await read?.beforeRead?.(payload.raw.length);
      return payload;
    },
    async cancel() {
      return false;
    },
    async requeueDeadLetters() {
      return [];
    },
    transaction: (work) => work(fake),
  };
  return fake;
}
