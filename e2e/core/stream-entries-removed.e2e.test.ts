// What Redis does to the stream under the engine, not what producers write into it: entries removed
// (XTRIM, MAXLEN, XDEL) before an engine handled them, and the consumer group destroyed while the
// stream keeps its entries. Counted: every entry added is a delivery, a quarantined row, or a
// removal the operator is told about (log line and metric); nothing is handled twice. And the Redis
// settings under which Redis itself could drop the stream (an eviction policy, no AOF) are named.
// A Redis of this file's own, and an engine per case (stopped while the stream is changed under it).
import { randomUUID } from 'node:crypto';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
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
let engine: Engine | null = null;
let logs: CapturedLogs;

function command(recipient: string): string[] {
  return ['schema_version', '2', 'command', JSON.stringify({ source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 's', text: 't' } })];
}

async function xadd(fields: string[]): Promise<string> {
  return (await redis.xadd(COMMAND_STREAM, '*', ...fields)) as string;
}

async function start(): Promise<Engine> {
  logs = captureLogs('core', 'debug');
  engine = await startTestEngine(
    db.dsn,
    { MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`, MAIL_REDIS_CONSUMER_GROUP: GROUP, MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`, MAIL_STREAM_RECLAIM_IDLE: '1s' },
    { logger: logs.logger },
  );
  return engine;
}

async function stop(): Promise<void> {
  await engine?.stop();
  engine = null;
  // Every line the engine wrote in the case, the stream intake's and its doorbell's included.
  expect(logs.repeatedKeys).toEqual([]);
}

function delivered(recipient: string): Promise<number> {
  return waitFor(`${recipient} delivered`, () => smtp.accepted.get(recipient) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
}

function logged(message: string): Array<Record<string, unknown>> {
  return logs.lines.filter((line) => line.msg === message);
}

async function metric(sample: string): Promise<number> {
  return metricValue(await metricsText(engine as Engine), sample);
}

beforeAll(async () => {
  db = await createTestDatabase('core-stream-entries-removed');
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).start();
  redis = new Redis({ host: container.getHost(), port: container.getPort(), maxRetriesPerRequest: 1 });
  smtp = await startScriptedSmtp();
});

beforeEach(async () => {
  await redis.del(COMMAND_STREAM);
  // The group as an engine of this deployment made it, before any of the case's entries.
  await redis.xgroup('CREATE', COMMAND_STREAM, GROUP, '0', 'MKSTREAM');
});

afterEach(stop);

afterAll(async () => {
  redis?.disconnect();
  await container?.stop({ remove: true, removeVolumes: true });
  await smtp?.close();
  await db?.drop();
});

describe('entries removed from the stream before an engine handled them', () => {
  it('read by a consumer that died, then deleted: each is logged with its id and counted, and the rest is delivered', async () => {
    const kept = unique('pending-kept');
    const ids = [await xadd(command(unique('pending-deleted'))), await xadd(command(kept)), await xadd(command(unique('pending-trimmed')))];
    // A consumer of the deployment reads them and dies before handling any.
    await redis.xreadgroup('GROUP', GROUP, 'died', 'COUNT', 10, 'STREAMS', COMMAND_STREAM, '>');
    await redis.xdel(COMMAND_STREAM, ids[0] as string, ids[2] as string);

    await start();
    await delivered(kept);
    const lost = await waitFor('the two removed entries reported', () => logged('stream entry removed from the stream before it was handled: its command is lost'), (lines) => lines.length === 2);
    expect(lost.map((line) => line.entryId).sort()).toEqual([ids[0], ids[2]].sort());
    expect(await metric('mail_stream_entries_lost_total{how="removed_pending"}')).toBe(2);
    expect(await redis.xpending(COMMAND_STREAM, GROUP)).toEqual([0, null, null, null]);
  });

  it('never read (trimmed while no engine ran): the group\'s count of them is exported and logged once the engine caught up', async () => {
    // The deployment has been reading (Redis keeps an exact count of what the group read from then on).
    await start();
    const before = unique('before-trim');
    await xadd(command(before));
    await delivered(before);
    await stop();

    for (let i = 0; i < 5; i++) await xadd(command(unique('trimmed-unread')));
    await redis.xtrim(COMMAND_STREAM, 'MAXLEN', 0);
    const after = [unique('after-trim'), unique('after-trim')];
    for (const recipient of after) await xadd(command(recipient));

    await start();
    for (const recipient of after) await delivered(recipient);
    await waitFor('the removed entries exported', () => metric('mail_stream_entries_lost_total{how="removed_unread"}'), (n) => n === 5);
    const [line] = await waitFor('the removal logged', () => logged('stream entries were removed from the stream before this group read them: their commands are lost'), (lines) => lines.length > 0);
    expect(line).toMatchObject({ removedUnread: 5 });
    // Each removal is counted once, not at every check: later commands change nothing.
    const later = unique('after-trim');
    await xadd(command(later));
    await delivered(later);
    expect(await metric('mail_stream_entries_lost_total{how="removed_unread"}')).toBe(5);
  });
});

describe('the consumer group destroyed while the stream keeps its entries', () => {
  it('is created again after the last entry this engine handled: nothing is read, quarantined or accepted twice', async () => {
    await start();
    const garbage = await xadd(['schema_version', '9', 'x', 'y']);
    const first = unique('before-destroy');
    await xadd(command(first));
    await delivered(first);
    await waitFor('the garbage entry quarantined', async () => (await db.pool.query('SELECT 1 FROM mail.malformed_commands WHERE stream_entry_id = $1', [garbage])).rowCount, (n) => n === 1);

    await redis.xgroup('DESTROY', COMMAND_STREAM, GROUP);
    const later = unique('after-destroy');
    await xadd(command(later));
    await delivered(later);

    const quarantined = await db.pool.query('SELECT 1 FROM mail.malformed_commands WHERE stream_entry_id = $1', [garbage]);
    expect(quarantined.rowCount).toBe(1);
    // The series exists once a duplicate was counted.
    expect((await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="duplicate"}')) || 0).toBe(0);
    expect(await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="created"}')).toBe(2);
  });

  it('while an entry of a concurrent read keeps failing and the rest of that read was handled: nothing handled is read, quarantined or accepted again', async () => {
    // The entries of one read are handled at once (MAIL_STREAM_CONCURRENCY): one failing leaves a gap
    // in what is handled, the others behind it are acknowledged. The group destroyed then must not
    // bring those back, nor anything before them. The failure is a trigger raising lock_not_available
    // (retryable: waited out, never quarantined) for one recipient, until the test drops it.
    await start();
    const first = unique('before-gap');
    await xadd(command(first));
    await delivered(first);
    const held = unique('held');
    await db.pool.query(`CREATE FUNCTION public.hold_one_intake() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.recipient LIKE 'held-%' THEN RAISE EXCEPTION 'held by the test' USING ERRCODE = '55P03'; END IF;
        RETURN NEW;
      END $$`);
    await db.pool.query('CREATE TRIGGER hold_one_intake BEFORE INSERT ON mail.deliveries FOR EACH ROW EXECUTE FUNCTION public.hold_one_intake()');
    try {
      // One MULTI: the whole burst is one read of the engine.
      const burst = redis.multi().xadd(COMMAND_STREAM, '*', ...command(held));
      for (let i = 0; i < 3; i++) burst.xadd(COMMAND_STREAM, '*', 'schema_version', '9', 'garbage', String(i));
      const behind = [unique('behind-gap'), unique('behind-gap')];
      for (const recipient of behind) burst.xadd(COMMAND_STREAM, '*', ...command(recipient));
      const ids = ((await burst.exec()) ?? []).map(([, id]) => id as string);
      const garbage = ids.slice(1, 4);
      for (const recipient of behind) await delivered(recipient);
      const quarantinedOnce = () => db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.malformed_commands WHERE stream_entry_id = ANY($1)', [garbage]);
      await waitFor('the garbage entries quarantined', async () => (await quarantinedOnce()).rows[0]?.n, (n) => n === 3);
      await waitFor('the held entry failed', () => logged('accepting a stream command failed; it stays pending').length, (n) => n >= 1);

      await redis.xgroup('DESTROY', COMMAND_STREAM, GROUP);
      await db.pool.query('DROP TRIGGER hold_one_intake ON mail.deliveries');
      await delivered(held);
      await waitFor('the group created again and every entry acknowledged', async () => {
        const groups = (await redis.xinfo('GROUPS', COMMAND_STREAM)) as unknown[];
        return groups.length === 0 ? -1 : ((await redis.xpending(COMMAND_STREAM, GROUP)) as [number])[0];
      }, (n) => n === 0);

      const rows = await db.pool.query<{ id: string; n: number }>('SELECT stream_entry_id AS id, count(*)::int AS n FROM mail.malformed_commands WHERE stream_entry_id = ANY($1) GROUP BY 1 ORDER BY 1', [garbage]);
      expect(rows.rows).toEqual(garbage.map((id) => ({ id, n: 1 })));
      expect((await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="duplicate"}')) || 0).toBe(0);
      expect(await metric('mail_stream_commands_accepted_total{schema_version="2",outcome="created"}')).toBe(4);
      for (const recipient of [first, held, ...behind]) expect(smtp.accepted.get(recipient)).toBe(1);
    } finally {
      await db.pool.query('DROP TRIGGER IF EXISTS hold_one_intake ON mail.deliveries');
      await db.pool.query('DROP FUNCTION IF EXISTS public.hold_one_intake()');
    }
  });
});

describe('Redis settings under which Redis itself may lose the stream', () => {
  const settingWarnings = () => logs.lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('Redis: ')).map((line) => line.setting);

  it('are named when the engine starts: an eviction policy that may evict the stream, appendonly off', async () => {
    await redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
    await redis.config('SET', 'appendonly', 'no');
    try {
      await start();
      expect(settingWarnings().sort()).toEqual(['appendonly', 'maxmemory-policy']);
      const [policy] = logs.lines.filter((line) => line.setting === 'maxmemory-policy');
      expect(policy?.msg).toMatch(/maxmemory-policy is allkeys-lru: at maxmemory Redis may evict the command stream itself/);
      expect(policy?.value).toBe('allkeys-lru');
    } finally {
      await redis.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  it('and nothing is said of noeviction with appendonly on', async () => {
    await redis.config('SET', 'appendonly', 'yes');
    try {
      await start();
      expect(settingWarnings()).toEqual([]);
    } finally {
      await redis.config('SET', 'appendonly', 'no');
    }
  });
});
