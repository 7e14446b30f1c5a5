import { type AttemptRecord, createLogger, type OutcomeToRecord } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { EngineEvents } from '../engine-events.ts';
import { createFakeLifecycle, type FakeLifecycle, pgError } from '../testing/fake-lifecycle.ts';
import { type CompletionBatcherOptions, createCompletionBatcher } from './completion-batcher.ts';

const logger = createLogger('test', 'silent');
const sent: AttemptRecord = { status: 'sent', smtpCode: 250, enhancedCode: '2.0.0', smtpText: '250 ok', startedAt: new Date(0), finishedAt: new Date(1), durationMs: 1 };

function outcome(deliveryId: string, fields: Partial<OutcomeToRecord> = {}): OutcomeToRecord {
  return { deliveryId, attemptNumber: 1, status: 'sent', attempt: sent, waitMs: 0, lastError: null, bounce: null, ...fields };
}

/** A batcher on a fake lifecycle, with what it reported through its events. */
function batcherOn(lifecycle: FakeLifecycle, options: Partial<CompletionBatcherOptions> = {}) {
  const committed: Array<{ size: number; recorded: number; skipped: string[]; bounces: number }> = [];
  const isolated: string[] = [];
  const events = new EngineEvents();
  events.on('completion:batch', (batch) => committed.push(batch));
  events.on('completion:isolated', ({ reason }) => isolated.push(reason));
  const batcher = createCompletionBatcher({
    lifecycle,
    workerId: 'core:test',
    maxBatch: 3,
    // Long: a batch is written because it is full, unless a test says otherwise.
    flushDelayMs: 60_000,
    logger,
    events,
    ...options,
  });
  return { batcher, committed, isolated };
}

/** Every promise's result, resolved or rejected, in order. */
function settle<T>(promises: Array<Promise<T>>): Promise<Array<{ ok: true; value: T } | { ok: false; error: unknown }>> {
  return Promise.all(promises.map((promise) => promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))));
}

describe('completion batcher: batching', () => {
  it('writes the outcomes of workers finishing together in one call, as soon as the batch is full', async () => {
    const lifecycle = createFakeLifecycle();
    const { batcher, committed } = batcherOn(lifecycle);
    const results = await Promise.all(['d1', 'd2', 'd3'].map((id) => batcher.record(outcome(id))));
    expect(results).toEqual([true, true, true]);
    expect(lifecycle.batches.map((batch) => batch.map((o) => o.deliveryId))).toEqual([['d1', 'd2', 'd3']]);
    expect(committed).toMatchObject([{ size: 3, recorded: 3, skipped: [], bounces: 0 }]);
  });

  it('writes a batch that does not fill up flushDelayMs after its first outcome; until then the outcomes await their commit', async () => {
    const lifecycle = createFakeLifecycle();
    const { batcher } = batcherOn(lifecycle, { maxBatch: 10, flushDelayMs: 5 });
    const waiting = [batcher.record(outcome('d1')), batcher.record(outcome('d2'))];
    expect(batcher.awaitingCommit).toBe(2);
    expect(lifecycle.batches).toEqual([]);
    expect(await Promise.all(waiting)).toEqual([true, true]);
    expect(lifecycle.batches.map((batch) => batch.length)).toEqual([2]);
    expect(batcher.awaitingCommit).toBe(0);
  });

  it('tells a worker whose lease was lost `false`, the others `true`, and reports the skipped ones', async () => {
    const lifecycle = createFakeLifecycle();
    lifecycle.lost.add('d2');
    const { batcher, committed } = batcherOn(lifecycle);
    expect(await Promise.all(['d1', 'd2', 'd3'].map((id) => batcher.record(outcome(id))))).toEqual([true, false, true]);
    expect(committed).toMatchObject([{ size: 3, recorded: 2, skipped: ['d2'] }]);
  });

  it('passes bounces to the lifecycle with their failures and counts those stored', async () => {
    const lifecycle = createFakeLifecycle();
    lifecycle.lost.add('d3');
    const bounce = (to: string) => ({ recipient: to, messageIdHeader: '<x@y>', subject: 'Undelivered', fromHeader: 'MAILER-DAEMON@y', raw: Buffer.from('dsn'), traceparent: null });
    const { batcher, committed } = batcherOn(lifecycle);
    await Promise.all([
      batcher.record(outcome('d1', { status: 'failed', lastError: 'bad_recipient', bounce: bounce('a@x.test') })),
      batcher.record(outcome('d2')),
      batcher.record(outcome('d3', { status: 'dead_letter', lastError: 'ladder spent', bounce: bounce('c@x.test') })),
    ]);
    expect(lifecycle.bounces.map((b) => b.recipient)).toEqual(['a@x.test']);
    expect(committed).toMatchObject([{ bounces: 1 }]);
  });

  it('refuses a second outcome for a delivery whose first is still waiting', async () => {
    const lifecycle = createFakeLifecycle();
    const { batcher } = batcherOn(lifecycle, { maxBatch: 10, flushDelayMs: 5 });
    const first = batcher.record(outcome('d1'));
    await expect(batcher.record(outcome('d1', { status: 'retrying' }))).rejects.toThrow(/already has an outcome waiting/);
    expect(await first).toBe(true);
    expect(lifecycle.batches).toEqual([[outcome('d1')]]);
  });
});

describe('completion batcher: a batch that fails', () => {
  it('hands the error to every worker of the batch when the database is away, and tries nothing one by one', async () => {
    const lifecycle = createFakeLifecycle();
    const away = pgError('57P01', 'terminating connection due to administrator command');
    lifecycle.failNext(away);
    const { batcher, isolated } = batcherOn(lifecycle, { maxBatch: 2 });
    const results = await settle([batcher.record(outcome('d1')), batcher.record(outcome('d2'))]);
    expect(results).toEqual([{ ok: false, error: away }, { ok: false, error: away }]);
    expect(lifecycle.batches).toHaveLength(1);
    expect(lifecycle.bare).toEqual([]);
    expect(isolated).toEqual([]);
  });

  it('retries a batch refused for one row outcome by outcome: the others are recorded, the poison one is recorded bare', async () => {
    const lifecycle = createFakeLifecycle();
    lifecycle.refuse('d2', pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00'));
    const { batcher, isolated, committed } = batcherOn(lifecycle);
    const results = await Promise.all(['d1', 'd2', 'd3'].map((id) => batcher.record(outcome(id))));
    expect(results).toEqual([true, true, true]);
    expect(lifecycle.batches.map((batch) => batch.map((o) => o.deliveryId))).toEqual([['d1', 'd2', 'd3'], ['d1'], ['d2'], ['d3']]);
    // What is known stays (a sent stays sent); the refusal becomes its reason.
    expect(lifecycle.bare).toEqual([
      {
        deliveryId: 'd2',
        attemptNumber: 1,
        status: 'sent',
        lastError: 'could not record outcome (sent): invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)',
      },
    ]);
    expect(isolated).toEqual(['outcome_recorded_bare']);
    expect(committed.map((batch) => batch.size)).toEqual([1, 1]);
  });

  it('ends an unrecordable retry as a dead letter, and tells its worker whether the bare record landed', async () => {
    const lifecycle = createFakeLifecycle();
    lifecycle.refuse('d1', pgError('23514', 'violates check constraint'));
    lifecycle.lost.add('d1');
    const { batcher } = batcherOn(lifecycle, { maxBatch: 1 });
    expect(await batcher.record(outcome('d1', { status: 'retrying', waitMs: 60_000, lastError: 'greylisted' }))).toBe(false);
    expect(lifecycle.bare).toMatchObject([{ deliveryId: 'd1', status: 'dead_letter', lastError: expect.stringMatching(/^could not record outcome \(retrying: greylisted\)/) }]);
  });

  it('never isolates an outcome for a deadlock or a timeout: its worker gets the error and retries it', async () => {
    const lifecycle = createFakeLifecycle();
    const deadlock = pgError('40P01', 'deadlock detected');
    lifecycle.refuse('d1', deadlock);
    const { batcher, isolated } = batcherOn(lifecycle, { maxBatch: 2 });
    const results = await settle([batcher.record(outcome('d1')), batcher.record(outcome('d2'))]);
    expect(results).toEqual([{ ok: false, error: deadlock }, { ok: true, value: true }]);
    expect(lifecycle.bare).toEqual([]);
    expect(isolated).toEqual([]);
  });

  it('hands an outcome back to its worker when even the bare record is refused, counted as unrecordable', async () => {
    const lifecycle = createFakeLifecycle();
    const refusal = pgError('P0001', 'refused by a trigger');
    lifecycle.refuse('d1', refusal);
    lifecycle.refuseBare('d1', refusal);
    const { batcher, isolated } = batcherOn(lifecycle, { maxBatch: 1 });
    await expect(batcher.record(outcome('d1'))).rejects.toBe(refusal);
    expect(isolated).toEqual(['outcome_unrecordable']);
  });

  it('does not count a bare record that met a deadlock as unrecordable: the worker retries it', async () => {
    const lifecycle = createFakeLifecycle();
    const deadlock = pgError('40P01', 'deadlock detected');
    lifecycle.refuse('d1', pgError('P0001', 'refused by a trigger'));
    lifecycle.refuseBare('d1', deadlock);
    const { batcher, isolated } = batcherOn(lifecycle, { maxBatch: 1 });
    await expect(batcher.record(outcome('d1'))).rejects.toBe(deadlock);
    expect(isolated).toEqual([]);
  });
});
