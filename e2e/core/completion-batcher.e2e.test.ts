// The completion batcher against real PostgreSQL: many outcomes share one commit, and the lease
// guard still holds per delivery — an outcome whose lease was lost (taken back and claimed by
// another engine) is not written, its worker hears `false`, and the others in the same batch are
// recorded with their attempt rows; a dead letter gets exactly one dead-letter row, a lost one none.
import { type AttemptRecord, claimDueDeliveries, createDeliveryLifecycle, createLogger } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineEvents } from '../../apps/core/src/engine-events.ts';
import { createCompletionBatcher } from '../../apps/core/src/queue/completion-batcher.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { attemptsOf, queueDelivery, unique } from './helpers/engine.ts';

let db: TestDatabase;
const ME = 'core:test:batcher-me';
const OTHER = 'core:test:batcher-other';

beforeAll(async () => {
  db = await createTestDatabase('core-batcher');
});

afterAll(async () => {
  await db?.drop();
});

function attempt(status: AttemptRecord['status'], code: number): AttemptRecord {
  const now = new Date();
  return { status, smtpCode: code, enhancedCode: null, smtpText: `${code} scripted`, startedAt: now, finishedAt: now, durationMs: 1 };
}

describe('completion batcher', () => {
  it('records a batch in one commit and leaves a delivery whose lease was lost untouched', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await queueDelivery(db.pool, { recipient: unique(`batch-${i}`) }));
    const claimed = await claimDueDeliveries(db.pool, ME, 10, 60_000);
    expect(claimed.map((d) => d.id).sort()).toEqual([...ids].sort());
    const [sent, lost, retry, dead, lostDead] = ids as [string, string, string, string, string];

    // Two leases are lost: taken back and claimed again by another engine (same attempt number,
    // so only locked_by tells them apart — exactly what the guard must check).
    await db.pool.query('UPDATE mail.deliveries SET locked_by = $2 WHERE id = ANY($1::uuid[])', [[lost, lostDead], OTHER]);

    const batches: Array<{ size: number; recorded: number; skipped: string[] }> = [];
    const events = new EngineEvents();
    events.on('completion:batch', (batch) => batches.push(batch));
    const batcher = createCompletionBatcher({
      lifecycle: createDeliveryLifecycle(db.pool),
      workerId: ME,
      maxBatch: 5,
      // Long: the batch is written because it is full, not because a timer fired.
      flushDelayMs: 60_000,
      logger: createLogger('core-e2e', 'silent'),
      events,
    });
    const results = await Promise.all([
      batcher.record({ deliveryId: sent, attemptNumber: 1, status: 'sent', attempt: attempt('sent', 250), waitMs: 0, lastError: null, bounce: null }),
      batcher.record({ deliveryId: lost, attemptNumber: 1, status: 'sent', attempt: attempt('sent', 250), waitMs: 0, lastError: null, bounce: null }),
      batcher.record({ deliveryId: retry, attemptNumber: 1, status: 'retrying', attempt: attempt('transport_failed', 451), waitMs: 60_000, lastError: '451 later', bounce: null }),
      batcher.record({ deliveryId: dead, attemptNumber: 1, status: 'dead_letter', attempt: attempt('transport_failed', 451), waitMs: 0, lastError: 'ladder spent', bounce: null }),
      batcher.record({ deliveryId: lostDead, attemptNumber: 1, status: 'dead_letter', attempt: attempt('transport_failed', 451), waitMs: 0, lastError: 'ladder spent', bounce: null }),
    ]);
    expect(results).toEqual([true, false, true, true, false]);
    expect(batches).toHaveLength(1);
    expect(batches[0]).toMatchObject({ size: 5, recorded: 3 });
    expect(batches[0]?.skipped.sort()).toEqual([lost, lostDead].sort());

    const { rows } = await db.pool.query<{ id: string; status: string; locked_by: string | null; attempt_count: number; next_attempt_at: Date | null }>(
      'SELECT id, status, locked_by, attempt_count, next_attempt_at FROM mail.deliveries WHERE id = ANY($1::uuid[])',
      [ids],
    );
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get(sent)).toMatchObject({ status: 'sent', locked_by: null });
    expect(byId.get(retry)).toMatchObject({ status: 'retrying', locked_by: null });
    expect(byId.get(retry)?.next_attempt_at).not.toBeNull();
    expect(byId.get(dead)).toMatchObject({ status: 'dead_letter', locked_by: null });
    // The lost ones still belong to the other engine, untouched, with no attempt row from us.
    expect(byId.get(lost)).toMatchObject({ status: 'sending', locked_by: OTHER, attempt_count: 1 });
    expect(byId.get(lostDead)).toMatchObject({ status: 'sending', locked_by: OTHER, attempt_count: 1 });
    expect(await attemptsOf(db.pool, lost)).toEqual([]);
    expect(await attemptsOf(db.pool, lostDead)).toEqual([]);
    expect(await attemptsOf(db.pool, sent)).toMatchObject([{ attempt_number: 1, status: 'sent', smtp_code: 250 }]);
    expect(await attemptsOf(db.pool, retry)).toMatchObject([{ attempt_number: 1, status: 'transport_failed', smtp_code: 451 }]);

    const deadLetters = await db.pool.query<{ delivery_id: string; reason: string }>(
      'SELECT delivery_id, reason FROM mail.dead_letters WHERE delivery_id = ANY($1::uuid[])',
      [ids],
    );
    expect(deadLetters.rows).toEqual([{ delivery_id: dead, reason: 'ladder spent' }]);
  });

  it('gives the attempt number back for a delivery ended without an attempt', async () => {
    const id = await queueDelivery(db.pool, { recipient: unique('unattempted') });
    const [claimed] = await claimDueDeliveries(db.pool, ME, 1, 60_000);
    expect(claimed?.id).toBe(id);
    const batcher = createCompletionBatcher({ lifecycle: createDeliveryLifecycle(db.pool), workerId: ME, maxBatch: 8, flushDelayMs: 1, logger: createLogger('core-e2e', 'silent') });
    expect(await batcher.record({ deliveryId: id, attemptNumber: 1, status: 'suppressed', attempt: null, waitMs: 0, lastError: 'on the list', bounce: null })).toBe(true);
    const { rows } = await db.pool.query('SELECT status, attempt_count, last_error FROM mail.deliveries WHERE id = $1', [id]);
    expect(rows[0]).toEqual({ status: 'suppressed', attempt_count: 0, last_error: 'on the list' });
    expect(await attemptsOf(db.pool, id)).toEqual([]);
  });
});
