// Poisoned stream entries: a NUL or invalid UTF-8 in a stream entry's `source` or `schema_version` made the
// quarantine insert fail; the consumer restarted and re-read the same entry forever, and the next
// valid command was never accepted. Here every field of both schema versions is poisoned in turn
// (NUL, invalid UTF-8 bytes, a lone surrogate as CESU-8 bytes or as a JSON escape), and each poisoned
// entry is followed by a valid command that must be accepted and delivered. A Redis of this file's
// own: the shared one's stream is read by stream-intake.e2e.test.ts.
import { randomUUID } from 'node:crypto';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, metricValue, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let container: StartedRedisContainer;
let redis: Redis;
let engine: Engine;
let smtp: ScriptedSmtp;
const GROUP = 'postern-core';

type Value = string | Buffer;

/** Appended to a field's valid value. */
const RAW_POISONS: Record<string, (value: string) => Value> = {
  nul: (value) => `${value}\u0000`,
  'invalid UTF-8': (value) => Buffer.concat([Buffer.from(value), Buffer.from([0xff, 0xfe, 0xc3, 0x28])]),
  'lone surrogate (CESU-8 bytes)': (value) => Buffer.concat([Buffer.from(value), Buffer.from([0xed, 0xa0, 0x80])]),
};
/** Inside a JSON string: what JSON.parse turns into a NUL or a lone surrogate. */
const JSON_POISONS: Record<string, string> = { 'NUL escape': '\\u0000', 'lone surrogate escape': '\\ud800' };

function v1Rendered(recipient: string): Record<string, string> {
  return {
    schema_version: '1', source: 'billing', idempotency_key: randomUUID(), recipient, payload_mode: 'rendered',
    subject: 'Your receipt', text: 'Thank you.', html: '<p>Thank you.</p>', category: 'receipts', delivery_id: randomUUID(),
  };
}

function v1Template(recipient: string): Record<string, string> {
  return {
    schema_version: '1', source: 'accounts', idempotency_key: randomUUID(), recipient, payload_mode: 'template',
    template_id: 'password-reset', locale: 'en', variables: JSON.stringify({ name: 'Ada', resetUrl: 'https://x.test/r', expiresInMinutes: 30 }),
  };
}

/** A v2 command as JSON text, with `poison` (JSON text) spliced into the string at `path`. */
function v2Poisoned(recipient: string, path: string, poison: string): Record<string, string> {
  const marker = '@@POISON@@';
  const command: Record<string, unknown> = {
    source: 'billing', idempotencyKey: randomUUID(), to: recipient, deliveryId: randomUUID(), category: 'receipts',
    payload: path.startsWith('payload.variables')
      ? { mode: 'template', templateId: 'password-reset', locale: 'en', variables: { name: 'Ada', resetUrl: 'https://x.test/r', expiresInMinutes: 30 } }
      : { mode: 'rendered', subject: 'Your receipt', text: 'Thank you.', html: '<p>Thank you.</p>' },
  };
  const keys = path.split('.');
  let target = command;
  for (const key of keys.slice(0, -1)) target = target[key] as Record<string, unknown>;
  const last = keys[keys.length - 1] as string;
  target[last] = `${String(target[last] ?? '')}${marker}`;
  return { schema_version: '2', command: JSON.stringify(command).replace(marker, poison) };
}

async function xadd(fields: Record<string, Value>): Promise<string> {
  return (await redis.xadd(COMMAND_STREAM, '*', ...Object.entries(fields).flat())) as string;
}

async function pendingCount(): Promise<number> {
  const summary = (await redis.xpending(COMMAND_STREAM, GROUP)) as [number, ...unknown[]];
  return summary[0];
}

/** Where a poisoned entry went: quarantined (its row), accepted with markers (a delivery), or nowhere. */
async function accountedFor(entryId: string, recipient: string): Promise<'quarantined' | 'accepted' | 'lost'> {
  const quarantined = await db.pool.query('SELECT 1 FROM mail.malformed_commands WHERE stream_entry_id = $1', [entryId]);
  if (quarantined.rows.length > 0) return 'quarantined';
  const accepted = await db.pool.query('SELECT 1 FROM mail.deliveries WHERE recipient = $1', [recipient]);
  return accepted.rows.length > 0 ? 'accepted' : 'lost';
}

/** A poisoned entry, then a valid command: the valid one is delivered, the poisoned one is
 *  acknowledged and accounted for. */
async function poisonThenValid(poisoned: Record<string, Value>, recipient: string): Promise<'quarantined' | 'accepted'> {
  const entryId = await xadd(poisoned);
  const next = unique('after-poison');
  await xadd(v1Rendered(next));
  await waitFor(`the valid command after ${entryId} delivered`, () => smtp.accepted.get(next) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
  await waitFor('every entry acknowledged', pendingCount, (n) => n === 0, { timeoutMs: 10_000, intervalMs: 100 });
  const where = await accountedFor(entryId, recipient);
  expect(where).not.toBe('lost');
  return where as 'quarantined' | 'accepted';
}

beforeAll(async () => {
  db = await createTestDatabase('core-poison-stream');
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).start();
  redis = new Redis({ host: container.getHost(), port: container.getPort(), maxRetriesPerRequest: 1 });
  smtp = await startScriptedSmtp();
  engine = await startTestEngine(db.dsn, {
    MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`,
    MAIL_REDIS_CONSUMER_GROUP: GROUP,
    MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
  });
});

afterAll(async () => {
  await engine?.stop();
  redis?.disconnect();
  await container?.stop({ remove: true, removeVolumes: true });
  await smtp?.close();
  await db?.drop();
});

describe('poisoned stream fields', () => {
  const v1Cases = [
    ...Object.keys(v1Rendered('x')).map((field) => ({ build: v1Rendered, field })),
    ...['template_id', 'locale', 'variables'].map((field) => ({ build: v1Template, field })),
  ].flatMap(({ build, field }) => Object.keys(RAW_POISONS).map((poison) => ({ build, field, poison })));

  it.each(v1Cases)('v1 $field with $poison: quarantined, and the next command is delivered', async ({ build, field, poison }) => {
    const recipient = unique('v1-poison');
    const fields: Record<string, Value> = build(recipient);
    fields[field] = (RAW_POISONS[poison] as (value: string) => Value)(fields[field] as string);
    // Refused (quarantined) with a reason naming the field, never accepted with a NUL or with
    // replacement characters where a producer's bytes were not UTF-8 (silent-encoding-change, docs/incidents.md).
    expect(await poisonThenValid(fields, recipient)).toBe('quarantined');
  });

  const v2Paths = ['source', 'idempotencyKey', 'to', 'deliveryId', 'category', 'payload.subject', 'payload.text', 'payload.html', 'payload.variables.name'];
  const v2Cases = v2Paths.flatMap((path) => Object.keys(JSON_POISONS).map((poison) => ({ path, poison })));

  it.each(v2Cases)('v2 $path with a $poison: quarantined, and the next command is delivered', async ({ path, poison }) => {
    const recipient = unique('v2-poison');
    const where = await poisonThenValid(v2Poisoned(recipient, path, JSON_POISONS[poison] as string), recipient);
    expect(where).toBe('quarantined');
  });

  it('the quarantined values are storable copies with markers, and the refusal names the field', async () => {
    const entryId = await xadd({ ...v1Rendered(unique('marked')), source: 'bill\u0000ing', schema_version: '1\u0000' });
    await waitFor('quarantined', () => db.pool.query('SELECT * FROM mail.malformed_commands WHERE stream_entry_id = $1', [entryId]), (r) => r.rows.length === 1);
    const { rows } = await db.pool.query('SELECT failure_code, schema_version, source, raw FROM mail.malformed_commands WHERE stream_entry_id = $1', [entryId]);
    expect(rows[0]).toMatchObject({ failure_code: 'unknown_version', schema_version: '1\u2400' });
    expect(rows[0].raw).toContain('"source":"bill\\u0000ing"');

    const latin1 = await xadd({ ...v1Rendered(unique('latin1')), subject: Buffer.from([0x47, 0x72, 0xfc, 0xdf, 0x65]) });
    const quarantined = await waitFor(
      'the latin1 subject quarantined',
      () => db.pool.query('SELECT failure_code, failure_detail, source, raw FROM mail.malformed_commands WHERE stream_entry_id = $1', [latin1]),
      (r) => r.rows.length === 1,
    );
    expect(quarantined.rows[0]).toMatchObject({ failure_code: 'invalid_field', source: 'billing' });
    expect(quarantined.rows[0].failure_detail).toContain('"subject" not valid UTF-8');
    expect(quarantined.rows[0].raw).toContain('"subject":"Gr\ufffd\ufffde"');
  });
});

describe('a quarantine insert that fails for another reason than an outage', () => {
  it('acknowledges the entry anyway, counts it, and the stream flows', async () => {
    await db.pool.query(`
      CREATE FUNCTION e2e_refuse_quarantine() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.source = 'e2e-cursed' THEN RAISE EXCEPTION 'e2e: quarantine refused by a trigger' USING ERRCODE = 'P0001'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER e2e_refuse_quarantine BEFORE INSERT ON mail.malformed_commands FOR EACH ROW EXECUTE FUNCTION e2e_refuse_quarantine();`);
    try {
      const counted = () => metricsText(engine).then((text) => metricValue(text, 'mail_poison_items_total{loop="stream",reason="quarantine_failed"}') || 0);
      const before = await counted();
      const recipient = unique('cursed');
      const entryId = await xadd({ ...v1Rendered(recipient), source: 'e2e-cursed', payload_mode: 'carrier-pigeon' });
      const next = unique('after-cursed');
      await xadd(v1Rendered(next));
      await waitFor('the valid command behind it delivered', () => smtp.accepted.get(next) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
      await waitFor('every entry acknowledged', pendingCount, (n) => n === 0);
      expect(await accountedFor(entryId, recipient)).toBe('lost');
      expect(await counted()).toBe(before + 1);
    } finally {
      await db.pool.query('DROP TRIGGER e2e_refuse_quarantine ON mail.malformed_commands; DROP FUNCTION e2e_refuse_quarantine()');
    }
  });
});

describe('the handling-failure count is Redis\'s', () => {
  it('survives a restart of the engine: the entry is not handled five more times by the next one', async () => {
    const poisoned = unique('refused-by-trigger');
    await db.pool.query(`
      CREATE FUNCTION e2e_refuse_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.recipient LIKE 'refused-by-trigger-%' THEN RAISE EXCEPTION 'e2e: refused by a trigger' USING ERRCODE = 'P0001'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER e2e_refuse_delivery BEFORE INSERT ON mail.deliveries FOR EACH ROW EXECUTE FUNCTION e2e_refuse_delivery();`);
    let second: Engine | null = null;
    try {
      const entryId = await xadd(v1Rendered(poisoned));
      const delivered = async () => {
        const rows = (await redis.xpending(COMMAND_STREAM, GROUP, entryId, entryId, 1)) as Array<[string, string, number, number]>;
        return rows[0]?.[3] ?? 0;
      };
      await waitFor('the entry delivered three times', delivered, (n) => n >= 3, { timeoutMs: 20_000, intervalMs: 50 });
      await engine.stop();
      // Still pending, not yet quarantined: what follows is the next engine's doing.
      const early = await db.pool.query('SELECT 1 FROM mail.malformed_commands WHERE stream_entry_id = $1', [entryId]);
      expect(early.rows).toHaveLength(0);
      const deliveredBefore = await delivered();
      expect(deliveredBefore).toBeLessThan(5);
      // Another consumer (a new engine, new worker id) takes the entry over once it is idle.
      second = await startTestEngine(db.dsn, {
        MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`,
        MAIL_REDIS_CONSUMER_GROUP: GROUP,
        MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
        MAIL_STREAM_RECLAIM_IDLE: '1s',
      });
      const { rows } = await waitFor(
        'the entry quarantined as handling_failed',
        () => db.pool.query('SELECT failure_code, failure_detail FROM mail.malformed_commands WHERE stream_entry_id = $1', [entryId]),
        (result) => result.rows.length === 1,
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      expect(rows[0]?.failure_code).toBe('handling_failed');
      // An in-memory count started from zero in the new engine: four restarts, a fifth handling.
      const restarts = metricValue(await metricsText(second), 'mail_loop_restarts_total{loop="stream-consumer"}') || 0;
      expect(restarts).toBeLessThan(4);
      const next = unique('after-takeover');
      await xadd(v1Rendered(next));
      await waitFor('the stream flows', () => smtp.accepted.get(next) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
    } finally {
      await db.pool.query('DROP TRIGGER e2e_refuse_delivery ON mail.deliveries; DROP FUNCTION e2e_refuse_delivery()');
      if (second) engine = second;
    }
  });
});
