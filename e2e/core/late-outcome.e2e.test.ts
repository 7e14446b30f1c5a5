// A result that lands after its lease ran out, against real PostgreSQL:
//   - the lease reclaim never takes back a lease its engine still holds for live work;
//   - a late "sent" for a delivery the reclaim took back (outcome_unknown -> retrying) that nobody
//     has claimed again replaces that outcome_unknown attempt and ends the delivery `sent`;
//   - a late result for a delivery already started again by another engine changes nothing.
import { type AttemptRecord, claimDueDeliveries, createDeliveryLifecycle, createLogger, reclaimExpiredLeases } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCompletionBatcher } from '../../apps/core/src/queue/completion-batcher.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, deliveryRow, queueDelivery, unique } from './helpers/engine.ts';

let db: TestDatabase;
const ME = 'core:test:late-me';
const OTHER = 'core:test:late-other';

beforeAll(async () => {
  db = await createTestDatabase('core-late-outcome');
});

afterAll(async () => {
  await db?.drop();
});

function sentAttempt(): AttemptRecord {
  const now = new Date();
  return { status: 'sent', smtpCode: 250, enhancedCode: '2.0.0', smtpText: '250 2.0.0 queued late', startedAt: now, finishedAt: now, durationMs: 5 };
}

describe('late results and live leases', () => {
  it('skips live leases in the reclaim, records a late result nobody overtook, and leaves one that was overtaken', async () => {
    const late = await queueDelivery(db.pool, { recipient: unique('late') });
    const overtaken = await queueDelivery(db.pool, { recipient: unique('overtaken') });
    const live = await queueDelivery(db.pool, { recipient: unique('live') });
    // Leased for 1 ms: all three expire at once.
    const claimed = await claimDueDeliveries(db.pool, ME, 10, 1);
    expect(claimed).toHaveLength(3);
    await waitFor(
      'the leases to expire',
      () => db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE locked_until < now() AND status = 'sending'"),
      (result) => result.rows[0]?.n === 3,
    );

    const reclaimed = await reclaimExpiredLeases(db.pool, 100, 13, 1, [live]);
    expect(reclaimed.map((row) => row.id).sort()).toEqual([late, overtaken].sort());
    expect(await deliveryRow(db.pool, live)).toMatchObject({ status: 'sending' });
    // Another engine starts `overtaken` again before the late result arrives.
    await db.pool.query(
      `UPDATE mail.deliveries SET status = 'sending', locked_by = $2, locked_until = now() + interval '1 minute',
              attempt_count = attempt_count + 1, next_attempt_at = NULL WHERE id = $1`,
      [overtaken, OTHER],
    );

    const batcher = createCompletionBatcher({ lifecycle: createDeliveryLifecycle(db.pool), workerId: ME, maxBatch: 3, flushDelayMs: 60_000, logger: createLogger('core-e2e', 'silent') });
    const results = await Promise.all(
      [late, overtaken, live].map((deliveryId) =>
        batcher.record({ deliveryId, attemptNumber: 1, status: 'sent', attempt: sentAttempt(), waitMs: 0, lastError: null, bounce: null }),
      ),
    );
    expect(results).toEqual([true, false, true]);

    expect(await deliveryRow(db.pool, late)).toMatchObject({ status: 'sent', attempt_count: 1, last_error: null });
    expect(await attemptsOf(db.pool, late)).toMatchObject([{ attempt_number: 1, status: 'sent', smtp_code: 250, smtp_text: '250 2.0.0 queued late' }]);
    expect(await deliveryRow(db.pool, overtaken)).toMatchObject({ status: 'sending', attempt_count: 2 });
    expect(await attemptsOf(db.pool, overtaken)).toMatchObject([{ attempt_number: 1, status: 'outcome_unknown' }]);
    expect(await deliveryRow(db.pool, live)).toMatchObject({ status: 'sent', attempt_count: 1 });
    expect(await attemptsOf(db.pool, live)).toMatchObject([{ attempt_number: 1, status: 'sent' }]);
  });
});
