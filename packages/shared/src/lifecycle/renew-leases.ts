// Lease renewal: one set-based statement per engine and round (the engine's lease keeper,
// apps/core/src/queue/lease-keeper.ts), pushing locked_until forward for every lease the engine
// holds for live work. Not a status change, but guarded like one: only rows still 'sending' under
// this engine and attempt number. A lease already past
// locked_until but not yet taken back is renewed too — that is the engine coming back from a
// PostgreSQL outage with its sends' outcomes still to record. Rows not returned were lost (taken
// back by another engine while this one could not reach the database).
// locked_until is not a column the due-notification trigger watches: renewing wakes nobody.
import type { Queryable } from '../aliases/index.ts';

/** A lease an engine holds: the delivery and the attempt number it was claimed for. */
export interface HeldLease {
  id: string;
  attemptNumber: number;
}

const RENEW_SQL = `
UPDATE mail.deliveries d
   SET locked_until = now() + $4::double precision * interval '1 millisecond'
  FROM unnest($2::uuid[], $3::int[]) AS h(id, attempt_number)
 WHERE d.id = h.id AND d.status = 'sending' AND d.locked_by = $1 AND d.attempt_count = h.attempt_number
RETURNING d.id`;

export async function renewLeases(db: Queryable, workerId: string, held: readonly HeldLease[], leaseMs: number): Promise<Set<string>> {
  if (held.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>({
    name: 'postern_renew_leases',
    text: RENEW_SQL,
    values: [workerId, held.map((lease) => lease.id), held.map((lease) => lease.attemptNumber), leaseMs],
  });
  return new Set(rows.map((row) => row.id));
}
