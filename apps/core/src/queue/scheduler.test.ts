import type { ClaimedDelivery } from '@postern/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineEvents } from '../engine-events.ts';
import type { LoopContext } from '../keepalive/supervisor.ts';
import { createScheduler } from './scheduler.ts';
import { WorkChannel } from './work-channel.ts';

async function until(check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

function delivery(id: string): ClaimedDelivery {
  return { id, attempt_count: 1 } as ClaimedDelivery;
}

interface Options {
  concurrency?: number;
  batchSize?: number;
  claimAhead?: number;
  /** Long by default: only a wake-up makes the scheduler claim again. */
  pollIntervalMs?: number;
  /** Replaces the fake claim, which hands out `due` in order. */
  claim?: (wanted: number) => Promise<readonly ClaimedDelivery[]>;
}

const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

/** The scheduler with everything around it faked: PostgreSQL's claim, the LISTEN session, the
 *  completion batcher. The work channel is the real, in-memory one. */
function startScheduler(options: Options = {}) {
  const due: ClaimedDelivery[] = [];
  const wanted: number[] = [];
  const channel = new WorkChannel();
  const source = { wake: () => {}, broken: null as Error | null, closed: false };
  const completions = { awaitingCommit: 0, record: () => {} };
  const events = new EngineEvents();
  const claims: Array<{ wanted: number; claimed: number }> = [];
  events.on('claim', ({ wanted, claimed }) => claims.push({ wanted, claimed }));
  const scheduler = createScheduler({
    claim: async (count) => {
      wanted.push(count);
      return options.claim ? options.claim(count) : due.splice(0, count);
    },
    listen: async (wake) => {
      source.wake = wake;
      return {
        get broken() {
          return source.broken;
        },
        close: () => {
          source.closed = true;
        },
      };
    },
    channel,
    completions: {
      get awaitingCommit() {
        return completions.awaitingCommit;
      },
      onRecord: (listener) => {
        completions.record = listener;
      },
    },
    sizing: { concurrency: options.concurrency ?? 2, batchSize: options.batchSize ?? 32, claimAhead: options.claimAhead ?? 0 },
    pollIntervalMs: options.pollIntervalMs ?? 60_000,
    heartbeatIntervalMs: 60_000,
    events,
  });
  const controller = new AbortController();
  const context: LoopContext = { signal: controller.signal, beat: () => {}, progress: () => {}, setBusy: () => {}, abandoned: new AbortController().signal };
  const run = scheduler.body(context);
  const outcome = run.then(
    () => 'returned' as const,
    (error: Error) => error,
  );
  const stop = async () => {
    controller.abort();
    return outcome;
  };
  stops.push(stop);
  /** A worker takes the next delivery from the channel; finish() frees its slot. */
  const take = async () => {
    const item = await channel.take(1_000, new AbortController().signal);
    if (!item) throw new Error('nothing to take');
    return { item, finish: () => channel.finished() };
  };
  return { due, wanted, channel, source, completions, claims, outcome, stop, take };
}

const deliveries = (count: number, prefix = 'd') => Array.from({ length: count }, (_, index) => delivery(`${prefix}${index + 1}`));

describe('scheduler', () => {
  it('claims up to the free worker slots, then waits', async () => {
    const s = startScheduler({ concurrency: 3 });
    s.due.push(...deliveries(10));
    s.source.wake();
    await until(() => s.channel.waiting === 3);
    await settle();
    expect(s.wanted).toEqual([3]);
    expect(s.claims).toEqual([{ wanted: 3, claimed: 3 }]);
  });

  it('never claims more than one batch at a time, and claims the next batch at once while more is due', async () => {
    const s = startScheduler({ concurrency: 10, batchSize: 4 });
    s.due.push(...deliveries(6));
    s.source.wake();
    await until(() => s.channel.waiting === 6);
    await settle();
    // A full batch means more may be due: claimed again without waiting; a short one ends the round.
    expect(s.wanted.slice(0, 2)).toEqual([4, 4]);
    expect(s.claims.slice(0, 2)).toEqual([
      { wanted: 4, claimed: 4 },
      { wanted: 4, claimed: 2 },
    ]);
  });

  it('claims again as soon as a worker frees its slot while more is due', async () => {
    const s = startScheduler({ concurrency: 2 });
    s.due.push(...deliveries(5));
    s.source.wake();
    await until(() => s.channel.waiting === 2);
    const first = await s.take();
    await settle();
    // Taken is not free: the slot is still the worker's.
    expect(s.wanted).toEqual([2]);
    first.finish();
    await until(() => s.wanted.length === 2);
    expect(s.wanted).toEqual([2, 1]);
    await until(() => s.channel.waiting === 2);
  });

  it.each([
    { claimAhead: 1, claimedAhead: [1] },
    { claimAhead: 0, claimedAhead: [] },
  ])('claims ahead for workers that only wait for their commit, up to MAIL_CLAIM_AHEAD ($claimAhead)', async ({ claimAhead, claimedAhead }) => {
    const s = startScheduler({ concurrency: 2, claimAhead });
    s.due.push(...deliveries(6));
    s.source.wake();
    await until(() => s.channel.waiting === 2);
    await s.take();
    await s.take();
    // Both workers hand their outcomes over: one commit away from free.
    s.completions.awaitingCommit = 2;
    s.completions.record();
    await until(() => s.channel.waiting === claimedAhead.length);
    await settle();
    expect(s.wanted).toEqual([2, ...claimedAhead]);
  });

  it('wakes on a due notification, and polls when none comes', async () => {
    const woken = startScheduler();
    await until(() => woken.wanted.length === 1);
    woken.due.push(delivery('notified'));
    await settle();
    expect(woken.wanted).toHaveLength(1);
    woken.source.wake();
    await until(() => woken.channel.waiting === 1);

    const polling = startScheduler({ pollIntervalMs: 20 });
    await until(() => polling.wanted.length === 1);
    polling.due.push(delivery('missed-notification'));
    await until(() => polling.channel.waiting === 1);
  });

  it('claims again at once for a notification that came while a claim was in flight', async () => {
    let finishClaim: (claimed: ClaimedDelivery[]) => void = () => {};
    const batches: Array<ClaimedDelivery[] | null> = [[], null];
    const s = startScheduler({
      claim: (count) => {
        const batch = batches.shift();
        if (batch) return Promise.resolve(batch.slice(0, count));
        if (batch === null) return new Promise((resolve) => (finishClaim = resolve));
        return Promise.resolve(s.due.splice(0, count));
      },
    });
    await until(() => s.wanted.length === 1);
    s.source.wake();
    await until(() => s.wanted.length === 2);
    // The claim in flight did not see this row; its notification comes before the claim returns.
    s.due.push(delivery('committed-during-claim'));
    s.source.wake();
    finishClaim([]);
    await until(() => s.channel.waiting === 1);
    expect(s.wanted).toHaveLength(3);
  });

  it('returns when the engine stops, and closes its wake source', async () => {
    const s = startScheduler();
    await until(() => s.wanted.length === 1);
    expect(await s.stop()).toBe('returned');
    expect(s.source.closed).toBe(true);
    s.due.push(delivery('after-stop'));
    s.source.wake();
    await settle();
    expect(s.wanted).toHaveLength(1);
  });

  it('ends its run when the wake source breaks, so that its supervisor opens a new one', async () => {
    const s = startScheduler();
    await until(() => s.wanted.length === 1);
    s.source.broken = new Error('LISTEN connection ended');
    s.source.wake();
    expect(await s.outcome).toBe(s.source.broken);
    expect(s.source.closed).toBe(true);
  });

  it('on stop leaves exactly the claimed, unstarted deliveries to be released, a claim in flight included', async () => {
    let finishClaim: (claimed: ClaimedDelivery[]) => void = () => {};
    const batches = [deliveries(2), null];
    const s = startScheduler({
      concurrency: 2,
      claim: (count) => {
        const batch = batches.shift();
        if (batch) return Promise.resolve(batch.slice(0, count));
        return new Promise((resolve) => {
          finishClaim = resolve;
        });
      },
    });
    await until(() => s.channel.waiting === 2);
    const started = await s.take();
    started.finish();
    // The slot freed while more was due: a claim goes out, and the engine stops before it returns.
    await until(() => s.wanted.length === 2);
    const stopped = s.stop();
    finishClaim([delivery('claimed-while-stopping')]);
    expect(await stopped).toBe('returned');
    expect(s.channel.drain().map((item) => item.id)).toEqual(['d2', 'claimed-while-stopping']);
    expect(s.wanted).toEqual([2, 1]);
  });
});
