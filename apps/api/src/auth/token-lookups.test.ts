// The cap on bearer-token lookups, against a database whose answers the test releases: never more
// lookups at once than a quarter of the pool, the ones without a slot in time answered 'busy' and
// counted, a malformed header refused without a lookup, and every answer read afresh (no cache).
import { createMetricsRegistry, type Queryable } from '@postern/shared';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApiMetrics } from '../http/operation-metrics.ts';
import { createTokenLookups, TOKEN_LOOKUP_LIMITS, tokenLookupConcurrency } from './token-lookups.ts';

const TOKEN = `pst_${'A'.repeat(43)}`;
const CLIENT = '192.0.2.10';

function heldDatabase() {
  const pending: Array<() => void> = [];
  let rows: unknown[] = [];
  const db = {
    query: vi.fn(() => new Promise((resolve) => pending.push(() => resolve({ rows, rowCount: rows.length })))),
  } as unknown as Queryable & { query: ReturnType<typeof vi.fn> };
  return {
    db,
    pending,
    answer: (next: unknown[]) => {
      rows = next;
    },
    releaseAll: () => {
      for (const release of pending.splice(0)) release();
    },
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('tokenLookupConcurrency', () => {
  it('is a quarter of the pool, at least one', () => {
    expect(tokenLookupConcurrency(10)).toBe(2);
    expect(tokenLookupConcurrency(40)).toBe(10);
    expect(tokenLookupConcurrency(4)).toBe(1);
    expect(tokenLookupConcurrency(1)).toBe(1);
  });
});

describe('createTokenLookups', () => {
  it('runs at most a quarter of the pool at once; the rest wait, then are answered busy and counted', async () => {
    vi.useFakeTimers();
    const metrics = createApiMetrics(createMetricsRegistry('api'));
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 10, metrics);
    const answers = Array.from({ length: 5 }, () => authenticate(`Bearer ${TOKEN}`, CLIENT));
    await vi.advanceTimersByTimeAsync(0);
    expect(database.db.query).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(TOKEN_LOOKUP_LIMITS.waitMs);
    database.releaseAll();
    expect(await Promise.all(answers)).toEqual([null, null, 'busy', 'busy', 'busy']);
    expect(database.db.query).toHaveBeenCalledTimes(2);
    expect((await metrics.tokenLookupsRefused.get()).values[0]?.value).toBe(3);
  });

  it('gives a freed slot to the next waiting lookup', async () => {
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 4, createApiMetrics(createMetricsRegistry('api')));
    const first = authenticate(`Bearer ${TOKEN}`, CLIENT);
    const second = authenticate(`Bearer ${TOKEN}`, CLIENT);
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    database.releaseAll();
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    database.releaseAll();
    expect(await Promise.all([first, second])).toEqual([null, null]);
  });

  it('runs no lookup for a request whose client left while it waited, and counts it abandoned, not refused', async () => {
    const metrics = createApiMetrics(createMetricsRegistry('api'));
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 4, metrics);
    const first = authenticate(`Bearer ${TOKEN}`, CLIENT);
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    const gone = new AbortController();
    const abandoned = authenticate(`Bearer ${TOKEN}`, CLIENT, gone.signal);
    const next = authenticate(`Bearer ${TOKEN}`, CLIENT);
    gone.abort();
    expect(await abandoned).toBe('gone');
    database.releaseAll();
    // The freed slot goes to the next request, not to the one whose client left.
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    database.releaseAll();
    expect(await Promise.all([first, next])).toEqual([null, null]);
    expect(database.db.query).toHaveBeenCalledTimes(2);
    // Gone before it even asked: no slot, no lookup.
    expect(await authenticate(`Bearer ${TOKEN}`, CLIENT, gone.signal)).toBe('gone');
    expect(database.db.query).toHaveBeenCalledTimes(2);
    expect((await metrics.tokenLookupsAbandoned.get()).values[0]?.value).toBe(2);
    expect((await metrics.tokenLookupsRefused.get()).values[0]?.value ?? 0).toBe(0);
  });

  it('refuses a header that cannot hold a token without a lookup', async () => {
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 4, createApiMetrics(createMetricsRegistry('api')));
    expect(await authenticate('Basic dXNlcjpwYXNz', CLIENT)).toBeNull();
    expect(await authenticate('Bearer pst_short', CLIENT)).toBeNull();
    expect(database.db.query).not.toHaveBeenCalled();
  });

  it('asks the database on every request: a token revoked between two requests is refused on the second', async () => {
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 4, createApiMetrics(createMetricsRegistry('api')));
    database.answer([{ id: '1', name: 'svc', scopes: ['admin'], producer: 'api:svc' }]);
    const first = authenticate(`Bearer ${TOKEN}`, CLIENT);
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    database.releaseAll();
    expect(await first).toEqual({ tokenId: '1', tokenName: 'svc', scopes: ['admin'], producer: 'api:svc' });
    database.answer([]);
    const second = authenticate(`Bearer ${TOKEN}`, CLIENT);
    await vi.waitFor(() => expect(database.pending).toHaveLength(1));
    database.releaseAll();
    expect(await second).toBeNull();
  });

  // Measured before: first come first served, a flood of made-up tokens from one client queued
  // ahead of every other client's request, which waited out TOKEN_LOOKUP_LIMITS.waitMs behind it
  // and was answered 503 like the flood.
  it("takes another client's lookup next, ahead of a flood's waiting lookups, by network", async () => {
    vi.useFakeTimers();
    const database = heldDatabase();
    const authenticate = createTokenLookups(database.db, 4, createApiMetrics(createMetricsRegistry('api')));
    const flood = Array.from({ length: 30 }, (_, n) => authenticate(`Bearer ${TOKEN}`, `2001:db8:1:2::${n + 1}`));
    await vi.advanceTimersByTimeAsync(0);
    let answered = false;
    const service = authenticate(`Bearer ${TOKEN}`, '192.0.2.77').then((answer) => {
      answered = true;
      return answer;
    });
    // Each lookup takes 100 ms. The flood's turn came first: after the one running and one more of
    // its lookups, the service's runs, not after all thirty.
    for (let lookup = 0; lookup < 3; lookup += 1) {
      await vi.advanceTimersByTimeAsync(100);
      database.releaseAll();
      await vi.advanceTimersByTimeAsync(0);
    }
    expect(answered).toBe(true);
    expect(await service).toBeNull();
    // The flood's one network took its turns in order: three looked up, the rest out of time.
    await vi.advanceTimersByTimeAsync(TOKEN_LOOKUP_LIMITS.waitMs);
    database.releaseAll();
    const answers = await Promise.all(flood);
    expect(answers.slice(0, 3)).toEqual([null, null, null]);
    expect(new Set(answers.slice(3))).toEqual(new Set(['busy']));
  });
});
