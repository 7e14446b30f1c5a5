export type { AttemptRecord } from './attempt-row.ts';
export { cancelDelivery } from './cancel-delivery.ts';
export { type ClaimedDelivery, claimDueDeliveries } from './claim-deliveries.ts';
export { ANY_DEAD_LETTER, type DeadLetterFilterValues, deadLetterFilterParams, withDeadLetterFilter } from './dead-letter-filter.ts';
export { createDeliveryLifecycle, type DeliveryLifecycle, type RecordedOutcomes } from './delivery-lifecycle.ts';
export { BOUNCE_SOURCE, type BounceToStore, insertBounce, MAX_REASON_CHARS, noteUnbounced } from './fail-for-good.ts';
export { loadMessagePayload, type MessagePayload, PAYLOAD_SLICE_BYTES, type PayloadReadOptions } from './load-payload.ts';
export { expiredLeaseIds, type ReclaimedDelivery, reclaimExpiredLeases } from './reclaim-expired-leases.ts';
export { type BareOutcome, recordBareOutcome, unrecordableOutcome } from './record-bare-outcome.ts';
export { type Outcome, type OutcomeStatus, type OutcomeToRecord, recordLateOutcomes, recordOutcomes } from './record-outcomes.ts';
export { releaseClaims } from './release-claims.ts';
export { type HeldLease, renewLeases } from './renew-leases.ts';
export { type RequeueRequest, requeueDeadLetters } from './requeue-dead-letters.ts';
export {
  ATTEMPT_STATUSES,
  type AttemptStatus,
  DELIVERY_STATUSES,
  type DeliveryStatus,
  FAILURE_CODES,
  type FailureCode,
  isUuid,
  PAYLOAD_MODES,
  type PayloadMode,
  UUID_PATTERN,
} from './statuses.ts';
