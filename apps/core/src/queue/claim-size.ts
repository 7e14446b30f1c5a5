// How many deliveries the scheduler claims next: as many as there are free worker slots, counting
// a worker that only waits for its outcome's commit as free (up to MAIL_CLAIM_AHEAD of them, so
// the claim's commit overlaps that one instead of following it), never more than one batch.
// Deliveries already claimed and waiting in the channel fill slots too: nothing sits leased in
// memory longer than about one commit. A pure function, so the arithmetic is tested on its own.

export interface ClaimSizing {
  /** Attempt workers (MAIL_ATTEMPT_WORKER_CONCURRENCY). */
  concurrency: number;
  /** Most deliveries one claim takes (MAIL_CLAIM_BATCH_SIZE). */
  batchSize: number;
  /** Most deliveries claimed for workers only waiting for a commit (MAIL_CLAIM_AHEAD; 0: none). */
  claimAhead: number;
}

export interface WorkInHand {
  /** Claimed, waiting in the channel for a worker. */
  waiting: number;
  /** Taken by a worker and not finished. */
  busy: number;
  /** Outcomes handed to the completion batcher and not yet committed. */
  awaitingCommit: number;
}

/** Deliveries to claim now; 0 when every slot is taken. */
export function claimSize(sizing: ClaimSizing, inHand: WorkInHand): number {
  const almostFree = Math.min(sizing.claimAhead, inHand.awaitingCommit);
  const free = sizing.concurrency + almostFree - inHand.waiting - inHand.busy;
  return Math.max(0, Math.min(free, sizing.batchSize));
}
