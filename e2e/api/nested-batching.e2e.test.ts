// A full page with its nested fields costs a handful of statements, not one per row per field:
// Delivery.attempts, Delivery.deadLetter, DeadLetter.lastAttempt and DeadLetter.delivery are each
// read for the whole page at once (per-request loaders). Counted at the pg client of the API's own
// pool, so the token lookup and every resolver's statement are in the count.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { TestDatabase } from '../harness/index.ts';
import { closeApiFile, gqlData, mintToken, openApiFile } from './helpers/api.ts';
import { insertRenderedDelivery } from './helpers/deliveries.ts';

const PAGE_SIZE = 100;
/** Token lookup, the page, one statement per nested field, and some slack; unbatched is 300+. */
const MAX_STATEMENTS = 10;

let db: TestDatabase;
let api: Api;
let reader: string;
let recipient: string;

beforeAll(async () => {
  ({ db, api } = await openApiFile('api-batching'));
  reader = await mintToken(db.pool, ['deliveries:read:any', 'attempts:read']);
  recipient = `batch-${randomUUID().slice(0, 8)}@batch.test`;
  for (let i = 0; i < PAGE_SIZE; i++) await insertRenderedDelivery(db.pool, recipient, { status: 'dead_letter' });
});

afterAll(() => closeApiFile(db, api));

afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs `work`, returning how many statements the API's pool sent meanwhile. */
async function countApiStatements(work: () => Promise<unknown>): Promise<number> {
  let count = 0;
  const original = pg.Client.prototype.query;
  vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
    const name = (this as unknown as { connectionParameters?: { application_name?: string } }).connectionParameters?.application_name;
    if (name === 'postern-api') count += 1;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original);
  await work();
  return count;
}

describe('nested fields of a 100-row page', () => {
  it('deliveries { attempts deadLetter { lastAttempt } } is a handful of statements', async () => {
    let data: { deliveries: { edges: Array<{ node: { attempts: unknown[]; deadLetter: { lastAttempt: { id: string } } } }> } } | undefined;
    const statements = await countApiStatements(async () => {
      data = await gqlData(
        api,
        reader,
        `query($filter: DeliveryFilter) {
          deliveries(first: 100, filter: $filter) {
            edges { node { attempts { id } deadLetter { lastAttempt { id } } } }
          }
        }`,
        { filter: { recipient } },
      );
    });
    const edges = data?.deliveries.edges ?? [];
    expect(edges).toHaveLength(PAGE_SIZE);
    for (const { node } of edges) {
      expect(node.attempts).toHaveLength(1);
      expect(node.deadLetter.lastAttempt.id).toBeTruthy();
    }
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThanOrEqual(MAX_STATEMENTS);
  });

  it('deadLetters { lastAttempt delivery { attempts } } is a handful of statements', async () => {
    let data: { deadLetters: { edges: Array<{ node: { lastAttempt: { id: string }; delivery: { id: string; attempts: unknown[] } } }> } } | undefined;
    const statements = await countApiStatements(async () => {
      data = await gqlData(
        api,
        reader,
        `query($filter: DeadLetterFilter) {
          deadLetters(first: 100, filter: $filter) {
            edges { node { lastAttempt { id } delivery { attempts { id } } } }
          }
        }`,
        { filter: { recipient } },
      );
    });
    const edges = data?.deadLetters.edges ?? [];
    expect(edges).toHaveLength(PAGE_SIZE);
    for (const { node } of edges) {
      expect(node.lastAttempt.id).toBeTruthy();
      expect(node.delivery.attempts).toHaveLength(1);
    }
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThanOrEqual(MAX_STATEMENTS);
  });
});
