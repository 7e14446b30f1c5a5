import { childLogger, createLogger, repeatedTopLevelKeys } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { createAcceptBatcher } from './accept-batcher.ts';
import { type MessageToAccept, type PreparedAccept, prepareAccept, UndecidedAcceptError } from './accept-message.ts';

const logger = createLogger('test', 'silent');

function message(id: string, bytes = 100): MessageToAccept {
  return {
    id,
    envelopeFrom: 'a@x.test',
    envelopeTo: ['b@y.test'],
    targets: ['b@inbox.test'],
    clientAddress: '192.0.2.1',
    clientHostname: null,
    helo: 'x.test',
    smtpUtf8: false,
    bodyType: null,
    messageIdHeader: null,
    subject: null,
    fromHeader: null,
    sizeBytes: bytes,
    raw: Buffer.alloc(bytes, 0x61),
    traceparent: null,
    authResults: null,
    authVerdicts: null,
  };
}

const prepared = (id: string, bytes?: number) => prepareAccept('mx.test', message(id, bytes));

/** A PostgreSQL ERROR as node-postgres reports it: the statement rolled back. */
function pgError(code: string): Error {
  return Object.assign(new Error(`error ${code}`), { severity: 'ERROR', code });
}

function deferred() {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A commit function whose statements the test decides one by one. */
function scriptedCommits() {
  const statements: { ids: string[]; done: ReturnType<typeof deferred> }[] = [];
  const waiters: (() => void)[] = [];
  return {
    statements,
    commit(batch: readonly PreparedAccept[]) {
      const done = deferred();
      statements.push({ ids: batch.map((entry) => entry.message.id), done });
      for (const wake of waiters.splice(0)) wake();
      return done.promise;
    },
    /** Resolves once `count` statements have been sent. */
    async sent(count: number) {
      while (statements.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
      return statements[count - 1] as (typeof statements)[number];
    },
  };
}

function settledState<T>(promise: Promise<T>): () => 'pending' | 'resolved' | 'rejected' {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  return () => state;
}

describe('createAcceptBatcher', () => {
  it('answers nobody before the commit, and shares the next commit among the messages that came meanwhile', async () => {
    const commits = scriptedCommits();
    const batcher = createAcceptBatcher({ commit: commits.commit, maxBatch: 64, maxBatchBytes: 1 << 20, maxInFlight: 1, logger });
    const first = batcher.accept(prepared('m1'));
    const firstState = settledState(first);
    const statement1 = await commits.sent(1);
    expect(statement1.ids).toEqual(['m1']);
    const later = ['m2', 'm3', 'm4'].map((id) => batcher.accept(prepared(id)));
    const laterStates = later.map((promise) => settledState(promise));
    // Several turns of the event loop: still nothing answered, nothing else sent while m1 commits.
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(firstState()).toBe('pending');
    expect(commits.statements).toHaveLength(1);
    expect(batcher.pending).toBe(4);

    statement1.done.resolve();
    expect((await first).messageId).toBe('m1');
    const statement2 = await commits.sent(2);
    expect(statement2.ids).toEqual(['m2', 'm3', 'm4']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(laterStates.map((state) => state())).toEqual(['pending', 'pending', 'pending']);
    statement2.done.resolve();
    expect((await Promise.all(later)).map((accepted) => accepted.messageId)).toEqual(['m2', 'm3', 'm4']);
    // The slot is given back after the answers (a turn of the event loop later).
    await new Promise((resolve) => setImmediate(resolve));
    expect(batcher.pending).toBe(0);
  });

  it('commits a poison message alone and the rest of its batch without it', async () => {
    const statements: string[][] = [];
    const batcher = createAcceptBatcher({
      async commit(batch) {
        statements.push(batch.map((entry) => entry.message.id));
        // A CHECK violation: the whole statement rolls back while the poison message is in it.
        if (batch.some((entry) => entry.message.id === 'poison')) throw pgError('23514');
      },
      maxBatch: 64,
      maxBatchBytes: 1 << 20,
      maxInFlight: 1,
      logger,
    });
    const outcomes = await Promise.allSettled(['m1', 'poison', 'm3'].map((id) => batcher.accept(prepared(id))));
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: '23514' });
    expect(statements[0]).toEqual(['m1', 'poison', 'm3']);
    expect(statements.slice(1).sort()).toEqual([['m1'], ['m3'], ['poison']]);
  });

  it("logs a rolled-back batch under the edge's logger with each key once, as `smtp/accept-batcher`", async () => {
    const lines: string[] = [];
    const root = createLogger('mta', 'info', { destination: { write: (line: string) => lines.push(line) } });
    const batcher = createAcceptBatcher({
      async commit(batch) {
        if (batch.some((entry) => entry.message.id === 'poison')) throw pgError('23514');
      },
      maxBatch: 64,
      maxBatchBytes: 1 << 20,
      maxInFlight: 1,
      // As edge.ts hands its own logger on.
      logger: childLogger(root, { component: 'smtp' }),
    });
    await Promise.allSettled(['m1', 'poison'].map((id) => batcher.accept(prepared(id))));
    const rolledBack = lines.filter((line) => line.includes('rolled back'));
    expect(rolledBack).toHaveLength(1);
    expect(repeatedTopLevelKeys(rolledBack[0] as string)).toEqual([]);
    expect(JSON.parse(rolledBack[0] as string)).toMatchObject({ app: 'mta', component: 'smtp/accept-batcher', messages: 2 });
  });

  it('gives every message of a batch the database error (no retries one by one) when the database is the cause', async () => {
    let statements = 0;
    const batcher = createAcceptBatcher({
      async commit() {
        statements += 1;
        throw pgError('57014'); // cancelled: statement_timeout or our pg_cancel_backend
      },
      maxBatch: 64,
      maxBatchBytes: 1 << 20,
      maxInFlight: 1,
      logger,
    });
    const outcomes = await Promise.allSettled(['m1', 'm2'].map((id) => batcher.accept(prepared(id))));
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    expect(statements).toBe(1);
  });

  it('leaves every message of an undecided batch undecided, each under its own id', async () => {
    const batcher = createAcceptBatcher({
      async commit(batch) {
        throw new UndecidedAcceptError(batch[0]?.message.id ?? '');
      },
      maxBatch: 64,
      maxBatchBytes: 1 << 20,
      maxInFlight: 1,
      logger,
    });
    const outcomes = await Promise.allSettled(['m1', 'm2'].map((id) => batcher.accept(prepared(id))));
    const reasons = outcomes.map((outcome) => (outcome as PromiseRejectedResult).reason);
    expect(reasons.every((reason) => reason instanceof UndecidedAcceptError)).toBe(true);
    expect(reasons.map((reason) => (reason as UndecidedAcceptError).messageId)).toEqual(['m1', 'm2']);
  });

  it('refuses what is still queued when the edge stops, and sends nothing more', async () => {
    const commits = scriptedCommits();
    const stop = new AbortController();
    const batcher = createAcceptBatcher({ commit: commits.commit, maxBatch: 64, maxBatchBytes: 1 << 20, maxInFlight: 1, logger, signal: stop.signal });
    const first = batcher.accept(prepared('m1'));
    const statement1 = await commits.sent(1);
    const queued = batcher.accept(prepared('m2'));
    stop.abort();
    await expect(queued).rejects.toThrow('not started');
    await expect(batcher.accept(prepared('m3'))).rejects.toThrow('not started');
    statement1.done.resolve();
    expect((await first).messageId).toBe('m1');
    expect(commits.statements).toHaveLength(1);
  });

  it('bounds a statement by messages and by bytes, a large message going alone', async () => {
    const statements: string[][] = [];
    const gate = deferred();
    const batcher = createAcceptBatcher({
      async commit(batch) {
        statements.push(batch.map((entry) => entry.message.id));
        await gate.promise;
      },
      maxBatch: 2,
      maxBatchBytes: 1_000,
      maxInFlight: 1,
      logger,
    });
    const all = [batcher.accept(prepared('a', 100))];
    await new Promise((resolve) => setImmediate(resolve));
    all.push(
      batcher.accept(prepared('b', 100)),
      batcher.accept(prepared('c', 100)),
      batcher.accept(prepared('d', 100)),
      batcher.accept(prepared('big', 5_000)),
      batcher.accept(prepared('e', 100)),
    );
    gate.resolve();
    await Promise.all(all);
    expect(statements).toEqual([['a'], ['b', 'c'], ['d'], ['big'], ['e']]);
  });
});
