// The stream loop abandoned by the watchdog (no heartbeat while its commands wait on the database)
// while a concurrent read is under way: the abandoned instance must take no new entry and stop
// reading, and what it is still finishing must not be handled again by its successor, which reads
// the consumer's pending entries again. Left running, each stall added one more reader of the
// consumer for good, and every entry of the read was handled twice: the malformed ones quarantined
// twice, the commands counted again as duplicates. The slowness is a trigger sleeping on the
// delivery insert of some recipients. A Redis and an engine of this file's own.
import { randomUUID } from 'node:crypto';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { type CapturedLogs, captureLogs, createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, metricValue, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

const GROUP = 'postern-core';
let db: TestDatabase;
let container: StartedRedisContainer;
let redis: Redis;
let smtp: ScriptedSmtp;
let engine: Engine;
let logs: CapturedLogs;

function command(recipient: string): string[] {
  return ['schema_version', '2', 'command', JSON.stringify({ source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 's', text: 't' } })];
}

async function metric(sample: string): Promise<number> {
  return metricValue(await metricsText(engine), sample) || 0;
}

beforeAll(async () => {
  db = await createTestDatabase('core-stream-loop-abandoned');
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).start();
  redis = new Redis({ host: container.getHost(), port: container.getPort(), maxRetriesPerRequest: 1 });
  smtp = await startScriptedSmtp();
  await db.pool.query(`CREATE FUNCTION public.slow_intake() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.recipient LIKE 'slow-%' THEN PERFORM pg_sleep(4); END IF;
      RETURN NEW;
    END $$`);
  await db.pool.query('CREATE TRIGGER slow_intake BEFORE INSERT ON mail.deliveries FOR EACH ROW EXECUTE FUNCTION public.slow_intake()');
  logs = captureLogs('core', 'info');
  engine = await startTestEngine(
    db.dsn,
    {
      MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`,
      MAIL_REDIS_CONSUMER_GROUP: GROUP,
      MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
      // Below the trigger's sleep: the stream loop is abandoned while its first commands wait.
      MAIL_WATCHDOG_STALL_THRESHOLD: '2500ms',
    },
    { logger: logs.logger },
  );
});

afterAll(async () => {
  await engine?.stop();
  redis?.disconnect();
  await container?.stop({ remove: true, removeVolumes: true });
  await smtp?.close();
  await db?.drop();
});

describe('the stream loop abandoned by the watchdog in the middle of a concurrent read', () => {
  it('no entry of the read is handled twice: each command created once, each malformed entry quarantined once', async () => {
    const slow = Array.from({ length: 8 }, () => unique('slow'));
    const burst = redis.multi();
    for (const recipient of slow) burst.xadd(COMMAND_STREAM, '*', ...command(recipient));
    for (let i = 0; i < 20; i++) burst.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', `garbage ${i}`);
    const ids = ((await burst.exec()) ?? []).map(([, id]) => id as string);
    const garbage = ids.slice(slow.length);

    await waitFor('the stream loop abandoned', () => logs.lines.filter((line) => line.msg === 'loop stalled: restarting it' && line.loop === 'stream-consumer').length, (n) => n >= 1);
    for (const recipient of slow) await waitFor(`${recipient} delivered`, () => smtp.accepted.get(recipient) ?? 0, (n) => n === 1, { timeoutMs: 30_000 });
    await waitFor('every entry acknowledged', async () => ((await redis.xpending(COMMAND_STREAM, GROUP)) as [number])[0], (n) => n === 0, { timeoutMs: 30_000 });
    // Nothing of the engine's still inserting a delivery: a second handling of the slow commands
    // (what the successor re-read) has ended too, and counted itself as a duplicate.
    await waitFor(
      'no delivery insert of the engine under way',
      async () =>
        (
          await db.pool.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'postern-core' AND state = 'active' AND query LIKE '%mail.deliveries%'",
          )
        ).rows[0]?.n,
      (n) => n === 0,
      { timeoutMs: 30_000 },
    );
    // A command added now is read by whoever still reads: it is handled after the entries before it.
    const after = unique('after-stall');
    await redis.xadd(COMMAND_STREAM, '*', ...command(after));
    await waitFor(`${after} delivered`, () => smtp.accepted.get(after) ?? 0, (n) => n === 1, { timeoutMs: 30_000 });

    const rows = await db.pool.query<{ id: string; n: number }>(
      'SELECT stream_entry_id AS id, count(*)::int AS n FROM mail.malformed_commands WHERE stream_entry_id = ANY($1) GROUP BY 1 ORDER BY 1',
      [garbage],
    );
    expect(rows.rows.filter((row) => row.n !== 1)).toEqual([]);
    expect(rows.rows).toHaveLength(garbage.length);
    expect(await metric('mail_stream_commands_malformed_total{failure_code="invalid_json"}')).toBe(garbage.length);
    expect(await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="duplicate"}')).toBe(0);
    expect(await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="created"}')).toBe(slow.length + 1);
  });
});
