// Taking back expired leases (sql/reclaim-expired-leases.ts) in one transaction with the bounces
// of what that dead-letters. A lease that runs out with the ladder spent ends the delivery as a
// dead letter without any attempt worker seeing it fail, so the worker's path to a bounce
// (completion batcher -> insertBounce) never runs for it; accepted mail must not vanish silently
// (ARCHITECTURE.md), so the same bounce is built here (delivery/bounce.ts) and inserted before the
// COMMIT: the failure and its notice commit together, or neither does.
import { type Pool, withTransaction } from '@postern/shared';
import { type BounceContext, bounceFor } from '../delivery/bounce.ts';
import { insertBounce } from './sql/insert-bounce.ts';
import { loadMessagePayload } from './sql/load-payload.ts';
import { reclaimExpiredLeases } from './sql/reclaim-expired-leases.ts';

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

const REASON = 'retry ladder exhausted; the last attempt was lost with its lease (the engine died or stalled), so its outcome is unknown';

export async function reclaimLeases(options: ReclaimOptions): Promise<{ reclaimed: number; deadLettered: number; bounces: number }> {
  return withTransaction(options.pool, async (client) => {
    const rows = await reclaimExpiredLeases(client, options.limit, options.maxAttempts, options.leaseMs, options.liveIds);
    let deadLettered = 0;
    let bounces = 0;
    for (const row of rows) {
      if (row.status !== 'dead_letter') continue;
      deadLettered += 1;
      // Only accepted mail has a payload; bounceFor() turns everything else away without it.
      const payload = row.payload_mode === 'relay' && row.envelope_from !== '' && row.message_id ? await loadMessagePayload(client, row.message_id) : null;
      const bounce = bounceFor(
        options.bounces,
        {
          id: row.id,
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
        // Whether the relay answered the lost attempt is not known: no reply, no Remote-MTA.
        { deadLettered: true, reason: REASON, reply: null, remoteMta: null },
      );
      if (!bounce) continue;
      await insertBounce(client, bounce);
      bounces += 1;
    }
    return { reclaimed: rows.length, deadLettered, bounces };
  });
}
