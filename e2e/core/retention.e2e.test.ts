// Retention against real PostgreSQL: idempotency reservations older than MAIL_IDEMPOTENCY_WINDOW
// are purged (the delivery they point at stays), younger ones are kept and still deduplicate; the
// heartbeat rows of engines silent for a day leave mail.workers (stalled-worker, docs/incidents.md);
// cached MTA-STS policies expired for longer than MAIL_RETENTION_AGE go, policies still in force or
// expired more recently stay; quarantined commands received longer ago than MAIL_RETENTION_AGE go,
// a batch at a time; an engine runs the same pass on demand, with its configured window, and says
// what it purged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeExpired } from '../../apps/core/src/keepalive/retention.ts';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';
import { queueDelivery, startTestEngine, unique } from './helpers/engine.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('core-retention');
});

afterAll(async () => {
  await db?.drop();
});

const DAY_MS = 24 * 60 * 60 * 1000;

describe('retention', () => {
  it('purges idempotency reservations older than the window, and only those', async () => {
    const oldId = await queueDelivery(db.pool, { recipient: unique('old'), idempotencyKey: 'retention-old' });
    const freshId = await queueDelivery(db.pool, { recipient: unique('fresh'), idempotencyKey: 'retention-fresh' });
    await db.pool.query(`UPDATE mail.idempotency_reservations SET created_at = now() - interval '2 days' WHERE delivery_id = $1`, [oldId]);

    const purged = await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS });
    expect(purged.reservations).toBe(1);
    const { rows } = await db.pool.query<{ delivery_id: string }>('SELECT delivery_id FROM mail.idempotency_reservations');
    expect(rows.map((row) => row.delivery_id)).toEqual([freshId]);
    const deliveries = await db.pool.query('SELECT id FROM mail.deliveries WHERE id = ANY($1::uuid[])', [[oldId, freshId]]);
    expect(deliveries.rowCount).toBe(2);
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS })).reservations).toBe(0);
  });

  it('removes the worker rows of engines whose heartbeat stopped a day ago, and only those', async () => {
    const dead = unique('dead-engine');
    const alive = unique('live-engine');
    const edge = unique('edge');
    await db.pool.query(
      `INSERT INTO mail.workers (worker_id, loop, app, hostname, pid, state, heartbeat_at)
       VALUES ($1, 'scheduler', 'core', 'host', 1, 'running', now() - interval '2 days'),
              ($1, 'retention', 'core', 'host', 1, 'running', now() - interval '2 days'),
              ($2, 'scheduler', 'core', 'host', 2, 'running', now() - interval '1 hour'),
              ($3, 'accept', 'mta', 'host', 3, 'running', now() - interval '2 days')`,
      [dead, alive, edge],
    );

    const purged = await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS });
    expect(purged.workers).toBe(2);
    const { rows } = await db.pool.query<{ worker_id: string }>(
      'SELECT DISTINCT worker_id FROM mail.workers WHERE worker_id = ANY($1::text[])',
      [[dead, alive, edge]],
    );
    expect(rows.map((row) => row.worker_id).sort()).toEqual([alive, edge].sort());
  });

  it('purges cached MTA-STS policies expired for longer than the retention age, and only those', async () => {
    const policy = (domain: string) => JSON.stringify({ id: `${domain}-1`, mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    await db.pool.query(
      `INSERT INTO mail.mta_sts_policies (domain, mode, expires_at, policy)
       VALUES ('long-gone.sts.test', 'enforce', now() - interval '31 days', $1),
              ('failed-fetch.sts.test', 'none', now() - interval '40 days', $2),
              ('recently-expired.sts.test', 'enforce', now() - interval '29 days', $3),
              ('in-force.sts.test', 'testing', now() + interval '6 days', $4)`,
      [policy('long-gone.sts.test'), policy('failed-fetch.sts.test'), policy('recently-expired.sts.test'), policy('in-force.sts.test')],
    );

    const purged = await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS });
    expect(purged.mtaStsPolicies).toBe(2);
    const { rows } = await db.pool.query<{ domain: string }>('SELECT domain FROM mail.mta_sts_policies ORDER BY domain');
    expect(rows.map((row) => row.domain)).toEqual(['in-force.sts.test', 'recently-expired.sts.test']);
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS })).mtaStsPolicies).toBe(0);
  });

  it('purges MTA-STS policies a batch at a time', async () => {
    await db.pool.query(
      `INSERT INTO mail.mta_sts_policies (domain, mode, expires_at, policy)
       SELECT 'batch-' || i || '.sts.test', 'none', now() - interval '60 days', '{}' FROM generate_series(1, 5) AS i`,
    );
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS }, 2)).mtaStsPolicies).toBe(2);
    const { rows } = await db.pool.query<{ left: number }>(`SELECT count(*)::int AS left FROM mail.mta_sts_policies WHERE domain LIKE 'batch-%'`);
    expect(rows[0]?.left).toBe(3);
    await db.pool.query(`DELETE FROM mail.mta_sts_policies WHERE domain LIKE 'batch-%'`);
  });

  it('purges quarantined commands received longer ago than the retention age, a batch at a time, and only those', async () => {
    await db.pool.query(
      `INSERT INTO mail.malformed_commands (received_at, channel, stream_entry_id, failure_code, failure_detail, source, raw)
       SELECT now() - make_interval(days => d), 'stream', d || '-0', 'invalid_json', 'not JSON', 'retention-test', 'x'
         FROM unnest(ARRAY[40, 35, 31, 29, 1]) AS d`,
    );
    const left = async () =>
      (await db.pool.query<{ days: number }>(`SELECT extract(day FROM now() - received_at)::int AS days FROM mail.malformed_commands WHERE source = 'retention-test' ORDER BY received_at`)).rows.map(
        (row) => row.days,
      );
    // The oldest first, two at a time: the batch was full, so the engine's pass would go on.
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS }, 2)).malformedCommands).toBe(2);
    expect(await left()).toEqual([31, 29, 1]);
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS })).malformedCommands).toBe(1);
    expect(await left()).toEqual([29, 1]);
    expect((await purgeExpired(db.pool, { retentionAgeMs: 30 * DAY_MS, idempotencyWindowMs: DAY_MS })).malformedCommands).toBe(0);
  });

  it("runs as one pass of an engine's maintenance when asked, with the engine's window", async () => {
    const engine = await startTestEngine(db.dsn, { MAIL_SMTP_MODE: 'stub', MAIL_IDEMPOTENCY_WINDOW: '24h' }, { maintenanceLoops: false });
    try {
      const oldId = await queueDelivery(db.pool, { recipient: unique('engine-old'), idempotencyKey: 'retention-engine-old' });
      await db.pool.query(`UPDATE mail.idempotency_reservations SET created_at = now() - interval '2 days' WHERE delivery_id = $1`, [oldId]);

      expect(await engine.maintenance.applyRetention()).toMatchObject({ reservations: 1 });
      const { rows } = await db.pool.query('SELECT 1 FROM mail.idempotency_reservations WHERE delivery_id = $1', [oldId]);
      expect(rows).toEqual([]);
      expect(await engine.maintenance.applyRetention()).toMatchObject({ reservations: 0 });
    } finally {
      await engine.stop();
    }
  });
});
