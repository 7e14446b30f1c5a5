// Taking back expired leases (sql/reclaim-expired-leases.ts) in one transaction with the bounces
// of what that dead-letters. A lease that runs out with the ladder spent ends the delivery as a
// dead letter without any attempt worker seeing it fail; accepted mail must not vanish silently,
// so it ends through the same fail-for-good path as a failed attempt (delivery/fail-for-good.ts),
// and its bounce is inserted before the COMMIT: the failure and its notice commit together.
//
// Poison isolation (one Subject with a NUL failed this transaction on every pass, and the
// scheduler, which reclaims before it claims, crash-looped and never claimed again):
//   - a pass that fails for another reason than the database being away is retried row by row;
//   - a row that still fails is dead-lettered (or put back) in its own transaction WITHOUT its
//     bounce, the refusal recorded in its reason;
//   - a row that fails even so is skipped, counted and logged loudly; it is tried again next pass,
//     and the pass pages past it, so that such rows cannot hide younger expired leases;
//   - reclaimPass() never throws: a failing reclaim must not stop the scheduler from claiming.
import { type Logger, type Pool, storableText, withTransaction } from '@postern/shared';
import type { BounceContext } from '../delivery/bounce.ts';
import { describeDbError, failForGood, MAX_REASON_CHARS } from '../delivery/fail-for-good.ts';
import type { EngineMetrics } from '../metrics.ts';
import { isRetryableDbError } from './db-errors.ts';
import { insertBounce } from './sql/insert-bounce.ts';
import { loadMessagePayload } from './sql/load-payload.ts';
import { expiredLeaseIds, noteUnbounced, reclaimExpiredLeases } from './sql/reclaim-expired-leases.ts';

export interface ReclaimOptions {
  pool: Pool;
  /** Most leases taken back per call. */
  limit: number;
  maxAttempts: number;
  leaseMs: number;
  bounces: BounceContext;
  /** Leases the calling engine holds for live work: never taken back (queue/live-leases.ts). */
  liveIds?: readonly string[];
}

export interface ReclaimResult {
  reclaimed: number;
  deadLettered: number;
  bounces: number;
  /** Dead-lettered without the bounce that could not be stored. */
  unbounced: number;
  /** Rows that could not be taken back at all this pass. */
  skipped: number;
}

const NOTHING: ReclaimResult = { reclaimed: 0, deadLettered: 0, bounces: 0, unbounced: 0, skipped: 0 };

function add(a: ReclaimResult, b: ReclaimResult): ReclaimResult {
  return {
    reclaimed: a.reclaimed + b.reclaimed,
    deadLettered: a.deadLettered + b.deadLettered,
    bounces: a.bounces + b.bounces,
    unbounced: a.unbounced + b.unbounced,
    skipped: a.skipped + b.skipped,
  };
}

/** One transaction: take back the expired leases (all, or `only` these), dead-letter the spent
 *  ones through fail-for-good with their bounces — or, when `bounceError` says the bounce could not
 *  be stored, without it and with that refusal in the reason. */
function reclaimOnce(options: ReclaimOptions, only: readonly string[] | null, bounceError: unknown = null): Promise<ReclaimResult> {
  return withTransaction(options.pool, async (client) => {
    const rows = await reclaimExpiredLeases(client, options.limit, options.maxAttempts, options.leaseMs, options.liveIds ?? [], only);
    const result = { ...NOTHING, reclaimed: rows.length };
    for (const row of rows) {
      if (row.status !== 'dead_letter') continue;
      result.deadLettered += 1;
      // Only accepted mail has a payload; failForGood() bounces nothing else.
      const payload = row.payload_mode === 'relay' && row.envelope_from !== '' && row.message_id ? await loadMessagePayload(client, row.message_id) : null;
      const ending = failForGood(
        options.bounces,
        {
          id: row.id,
          messageId: row.message_id,
          payloadMode: row.payload_mode,
          category: row.category,
          envelopeFrom: row.envelope_from,
          recipient: row.recipient,
          attempts: row.attempt_count,
          // Retention keeps a payload while its delivery waits; if it is gone anyway, the bounce
          // still goes out, without the original headers.
          raw: payload?.raw ?? Buffer.alloc(0),
          receivedAt: payload?.receivedAt ?? row.created_at,
        },
        { kind: 'lease_lost' },
      );
      if (!ending.bounce) continue;
      if (bounceError === null) {
        await insertBounce(client, ending.bounce);
        result.bounces += 1;
      } else {
        const reason = `${ending.reason}; no bounce was sent: storing it failed: ${describeDbError(bounceError)}`;
        await noteUnbounced(client, row.id, storableText(reason, { maxChars: MAX_REASON_CHARS }));
        result.unbounced += 1;
      }
    }
    return result;
  });
}

/** Pages a row-by-row pass may look at: rows that can never be taken back are paged past, so up
 *  to this many times `limit` of them cannot hide a younger expired lease. */
const MAX_ROW_BY_ROW_PAGES = 10;

async function reclaimRowByRow(options: ReclaimOptions, log: Logger): Promise<ReclaimResult> {
  let result = NOTHING;
  const skipped: string[] = [];
  for (let page = 0; page < MAX_ROW_BY_ROW_PAGES; page++) {
    const ids = await expiredLeaseIds(options.pool, options.limit, [...skipped, ...(options.liveIds ?? [])]);
    const skippedBefore = skipped.length;
    for (const id of ids) {
      try {
        result = add(result, await reclaimOnce(options, [id]));
      } catch (error) {
        // Not the row's fault (an outage, a deadlock, a timeout): the next pass tries it again whole.
        if (isRetryableDbError(error)) throw error;
        try {
          result = add(result, await reclaimOnce(options, [id], error));
          log.error({ err: error, deliveryId: id }, 'taking back an expired lease failed; taken back without its bounce');
        } catch (bareError) {
          if (isRetryableDbError(bareError)) throw bareError;
          skipped.push(id);
          result = add(result, { ...NOTHING, skipped: 1 });
          log.error({ err: bareError, first: describeDbError(error), deliveryId: id }, 'an expired lease cannot be taken back at all; skipped, the rest goes on');
        }
      }
    }
    // A page without a skipped row: what is younger is left to the next pass, as usual.
    if (ids.length < options.limit || skipped.length === skippedBefore) break;
  }
  return result;
}

/** Takes back expired leases, isolating a row that fails (see above). Throws when the database is
 *  away or the failure may pass on a retry (deadlock, timeout): the next pass tries again. */
export async function reclaimLeases(options: ReclaimOptions, log: Logger = options.bounces.logger): Promise<ReclaimResult> {
  try {
    return await reclaimOnce(options, null);
  } catch (error) {
    if (isRetryableDbError(error)) throw error;
    log.warn({ err: error }, 'taking back expired leases failed; taking them back one by one');
    return reclaimRowByRow(options, log);
  }
}

/** One reclaim pass of the scheduler, with its metrics and logs. Never throws: the claims that
 *  follow it must happen whatever it met (if the database is away, they fail on their own). */
export async function reclaimPass(options: ReclaimOptions & { metrics: EngineMetrics; logger: Logger }): Promise<ReclaimResult> {
  const { metrics, logger } = options;
  let taken: ReclaimResult;
  try {
    taken = await reclaimLeases(options, logger);
  } catch (error) {
    if (!isRetryableDbError(error)) metrics.poisonItems.inc({ loop: 'reclaim', reason: 'pass_failed' });
    logger.error({ err: error }, 'taking back expired leases failed; claiming goes on');
    return NOTHING;
  }
  if (taken.unbounced > 0) metrics.poisonItems.inc({ loop: 'reclaim', reason: 'dead_lettered_without_bounce' }, taken.unbounced);
  if (taken.skipped > 0) metrics.poisonItems.inc({ loop: 'reclaim', reason: 'row_skipped' }, taken.skipped);
  if (taken.reclaimed > 0) {
    metrics.leasesReclaimed.inc(taken.reclaimed);
    if (taken.deadLettered > 0) metrics.deadLetters.inc(taken.deadLettered);
    if (taken.bounces > 0) metrics.bounces.inc(taken.bounces);
    logger.warn(taken, 'took back expired leases (their attempts: outcome unknown; a spent ladder dead-letters)');
  }
  return taken;
}
