// The Redis Stream intake end to end: command -> PostgreSQL -> attempt -> the maildev sink, for both
// schema versions; duplicates; conflicts; and the silent-encoding-change lesson — garbage is quarantined, counted
// and acknowledged, and the stream keeps flowing. The only e2e file that uses the shared Redis's
// mail:delivery_commands (other files run their own Redis or none), so no engine reads another's.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { createTestDatabase, lockWaiters, type TestDatabase, waitFor, waitForSinkEmails } from '../harness/index.ts';
import { attemptsOf, metricsText, metricValue, startTestEngine, unique, waitForStatus } from './helpers/engine.ts';

let db: TestDatabase;
let engine: Engine;
let redis: Redis;
const group = `e2e-${randomUUID().slice(0, 8)}`;

function xadd(fields: Record<string, string>): Promise<string> {
  return redis.xadd(COMMAND_STREAM, '*', ...Object.entries(fields).flat()) as Promise<string>;
}

function v2(command: Record<string, unknown>): Record<string, string> {
  return { schema_version: '2', command: JSON.stringify(command) };
}

async function deliveryFor(source: string, key: string): Promise<string> {
  const { rows } = await waitFor(
    `a delivery for ${source}/${key}`,
    () => db.pool.query<{ id: string }>('SELECT id FROM mail.deliveries WHERE source = $1 AND idempotency_key = $2', [source, key]),
    (result) => result.rows.length > 0,
  );
  return rows[0]?.id as string;
}

async function pendingCount(): Promise<number> {
  const summary = (await redis.xpending(COMMAND_STREAM, group)) as [number, ...unknown[]];
  return summary[0];
}

beforeAll(async () => {
  db = await createTestDatabase('core-stream');
  const { host, port } = inject('postern').redis;
  const sink = inject('postern').maildev;
  redis = new Redis({ host, port, maxRetriesPerRequest: 1 });
  engine = await startTestEngine(db.dsn, {
    MAIL_REDIS_MASTER_ADDR: `${host}:${port}`,
    MAIL_REDIS_CONSUMER_GROUP: group,
    MAIL_SMTP_ADDR: `${sink.host}:${sink.smtpPort}`,
  });
});

afterAll(async () => {
  await engine?.stop();
  await redis?.quit();
  await db?.drop();
});

describe('stream intake', () => {
  it('a v1 template command is delivered to the sink with the rendered content, in the asked locale', async () => {
    const recipient = unique('v1-login');
    const key = randomUUID();
    await xadd({
      schema_version: '1',
      source: 'authsession',
      idempotency_key: key,
      recipient,
      payload_mode: 'template',
      template_id: 'login-code',
      locale: 'de-AT',
      variables: JSON.stringify({ code: '834201', expiresInMinutes: 10 }),
    });
    const [mail] = await waitForSinkEmails(recipient, 1);
    expect(mail?.subject).toBe('Ihr Anmeldecode: 834201');
    expect(mail?.text).toContain('Ihr Anmeldecode lautet 834201. Er ist 10 Minuten gültig.');
    expect(mail?.html).toContain('<strong>834201</strong>');
    const id = await deliveryFor('authsession', key);
    const { rows } = await db.pool.query('SELECT status, template_locale, template_hash, category, rfc_message_id FROM mail.deliveries WHERE id = $1', [id]);
    expect(rows[0]).toMatchObject({ template_locale: 'de', category: 'authsession' });
    expect(rows[0].template_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    await waitForStatus(db.pool, id, 'sent');
    expect(mail?.headers['message-id']).toBe(rows[0].rfc_message_id);
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'sent', smtp_code: 250 }]);
  });

  it('a v2 rendered command is delivered too', async () => {
    const recipient = unique('v2-rendered');
    await xadd(v2({ source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 'Invoice 7', text: 'Amount due: 7 EUR' } }));
    const [mail] = await waitForSinkEmails(recipient, 1);
    expect(mail?.subject).toBe('Invoice 7');
    expect(mail?.text?.trim()).toBe('Amount due: 7 EUR');
  });

  it('the same command twice (even re-encoded from v1 to v2) makes one delivery; the same key with other content is a recorded conflict', async () => {
    const recipient = unique('dup');
    const key = randomUUID();
    const variables = { name: 'Ada', items: [{ title: 'One', url: 'https://x.test/1' }], unsubscribeUrl: 'https://x.test/u' };
    await xadd({ schema_version: '1', source: 'notification', idempotency_key: key, recipient, payload_mode: 'template', template_id: 'notification-digest', variables: JSON.stringify(variables) });
    await xadd(v2({ source: 'notification', idempotencyKey: key, to: recipient, payload: { mode: 'template', templateId: 'notification-digest', variables } }));
    const conflicting = await xadd(v2({ source: 'notification', idempotencyKey: key, to: recipient, payload: { mode: 'rendered', subject: 'other', text: 'other' } }));
    const id = await deliveryFor('notification', key);
    const conflict = await waitFor(
      'the conflicting command to be quarantined',
      () => db.pool.query('SELECT failure_code, delivery_id, source FROM mail.malformed_commands WHERE stream_entry_id = $1', [conflicting]),
      (result) => result.rows.length === 1,
    );
    expect(conflict.rows[0]).toEqual({ failure_code: 'idempotency_conflict', delivery_id: id, source: 'notification' });
    await waitFor('every entry acknowledged', pendingCount, (n) => n === 0);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries WHERE recipient = $1', [recipient]);
    expect(rows[0].n).toBe(1);
    await waitForSinkEmails(recipient, 1);
    expect(metricValue(await metricsText(engine), 'mail_stream_commands_accepted_total{schema_version="2",outcome="duplicate"}')).toBeGreaterThanOrEqual(1);
  });

  it('accepts MAIL_STREAM_CONCURRENCY (8) commands at once, each in its own transaction, and every one of a burst once', async () => {
    // The test holds a lock that every reservation insert waits for: the engine's commands in
    // flight then show as PostgreSQL sessions waiting on it. One at a time, there was one.
    const lock = await db.pool.connect();
    const keys = Array.from({ length: 12 }, () => randomUUID());
    const recipient = unique('burst');
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE mail.idempotency_reservations IN SHARE MODE');
      // One MULTI: the burst is in the stream before the engine's next read, as a backlog would be
      // (commands of one read are what is handled at once).
      const burst = redis.multi();
      for (const key of keys) {
        burst.xadd(COMMAND_STREAM, '*', ...Object.entries(v2({ source: 'billing', idempotencyKey: key, to: recipient, payload: { mode: 'rendered', subject: 'burst', text: key } })).flat());
      }
      await burst.exec();
      const waiting = await waitFor(
        'eight of the engine\'s commands waiting on the lock at once',
        () => lockWaiters(db.pool, 'postern-core'),
        (n) => n >= 8,
        { timeoutMs: 20_000 },
      );
      expect(waiting).toBe(8);
      await lock.query('COMMIT');
    } finally {
      await lock.query('ROLLBACK').catch(() => {});
      lock.release();
    }
    const { rows } = await waitFor(
      'a delivery for each command of the burst',
      () => db.pool.query<{ n: number; keys: number }>('SELECT count(*)::int AS n, count(DISTINCT idempotency_key)::int AS keys FROM mail.deliveries WHERE recipient = $1', [recipient]),
      (result) => result.rows[0]?.n === keys.length,
    );
    expect(rows[0]).toEqual({ n: 12, keys: 12 });
    await waitFor('every entry acknowledged', pendingCount, (n) => n === 0);
  });

  it('a command posing as Postern itself (source "smtp" or "postern-dsn", the sources of the edge\'s mail and of the bounces) is refused, as an API token may not carry them', async () => {
    for (const source of ['smtp', 'postern-dsn']) {
      const recipient = unique(`posing-${source}`);
      const entry = await xadd(v2({ source, idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 's', text: 't' } }));
      const refused = await waitFor(
        `the command with source ${source} quarantined`,
        () => db.pool.query('SELECT failure_code, failure_detail FROM mail.malformed_commands WHERE stream_entry_id = $1', [entry]),
        (result) => result.rows.length === 1,
      );
      expect(refused.rows[0]).toMatchObject({ failure_code: 'invalid_field', failure_detail: expect.stringMatching(/"source" "[a-z-]+" is reserved/) });
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries WHERE recipient = $1', [recipient]);
      expect(rows[0].n).toBe(0);
    }
  });

  it('an entry giving a field twice (two recipients in one XADD) is refused, not sent to either', async () => {
    const [first, second] = [unique('twice-a'), unique('twice-b')];
    const fields = { schema_version: '1', source: 'billing', idempotency_key: randomUUID(), payload_mode: 'rendered', subject: 's', text: 't' };
    const entry = (await redis.xadd(COMMAND_STREAM, '*', ...Object.entries(fields).flat(), 'recipient', first, 'recipient', second)) as string;
    const refused = await waitFor(
      'the entry with two recipients quarantined',
      () => db.pool.query('SELECT failure_code, failure_detail FROM mail.malformed_commands WHERE stream_entry_id = $1', [entry]),
      (result) => result.rows.length === 1,
    );
    expect(refused.rows[0]).toEqual({ failure_code: 'invalid_field', failure_detail: '"recipient" given more than once (the raw copy holds the last value)' });
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries WHERE recipient = ANY ($1)', [[first, second]]);
    expect(rows[0].n).toBe(0);
  });

  it('silent-encoding-change: 100 garbage entries become 100 quarantined rows, counted, acknowledged, and the next valid command is still delivered', async () => {
    const before = metricValue(await metricsText(engine), 'mail_stream_commands_malformed_total{failure_code="invalid_json"}') || 0;
    const kinds: Array<Record<string, string>> = [
      { schema_version: '2', command: '{"source": "broken' },
      { schema_version: '7', whatever: 'x' },
      { payload: 'no version at all' },
      { schema_version: '1', source: 'x', idempotency_key: 'k', recipient: 'not-an-address', payload_mode: 'rendered', subject: 's', text: 't' },
      v2({ source: 'x', idempotencyKey: 'k', to: 'a@b.test', payload: { mode: 'template', templateId: 'no-such-template', variables: {} } }),
      v2({ source: 'x', idempotencyKey: 'k2', to: 'a@b.test', payload: { mode: 'template', templateId: 'password-reset', variables: { name: 'x' } } }),
      { schema_version: '1', source: 'x', recipient: 'a@b.test' },
      v2({ source: 'x', idempotencyKey: 'k3', to: 'a@b.test', payload: { mode: 'rendered', subject: 'nul \u0000 byte', text: 't' } }),
    ];
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push(await xadd(kinds[i % kinds.length] as Record<string, string>));
    const recipient = unique('after-garbage');
    await xadd(v2({ source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 'still flowing', text: 'yes' } }));

    await waitForSinkEmails(recipient, 1, { timeoutMs: 30_000 });
    const { rows } = await waitFor(
      '100 quarantined rows',
      () => db.pool.query<{ stream_entry_id: string; failure_code: string }>('SELECT stream_entry_id, failure_code FROM mail.malformed_commands WHERE stream_entry_id = ANY($1)', [ids]),
      (result) => result.rows.length === 100,
    );
    const codes = new Set(rows.map((row) => row.failure_code));
    expect([...codes].sort()).toEqual(['invalid_address', 'invalid_field', 'invalid_json', 'missing_field', 'missing_variable', 'unknown_template', 'unknown_version']);
    await waitFor('every entry acknowledged', pendingCount, (n) => n === 0);
    const text = await metricsText(engine);
    expect(metricValue(text, 'mail_stream_commands_malformed_total{failure_code="invalid_json"}') - before).toBe(13);
    const total = ['invalid_address', 'invalid_field', 'invalid_json', 'missing_field', 'missing_variable', 'unknown_template', 'unknown_version']
      .map((code) => metricValue(text, `mail_stream_commands_malformed_total{failure_code="${code}"}`))
      .reduce((sum, value) => sum + (Number.isNaN(value) ? 0 : value), 0);
    expect(total).toBeGreaterThanOrEqual(100);
  });

  it('answers the runbook smoke request with 404 JSON, shows a delivery, and is ready with the runbook metric names', async () => {
    const base = `http://${engine.http?.host}:${engine.http?.port}`;
    const missing = await fetch(`${base}/api/v1/internal/deliveries/does-not-exist`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not_found' });
    const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM mail.deliveries WHERE status = 'sent' LIMIT 1");
    const found = await fetch(`${base}/api/v1/internal/deliveries/${rows[0]?.id}`);
    expect(found.status).toBe(200);
    expect(await found.json()).toMatchObject({ id: rows[0]?.id, status: 'sent', attempts: [{ attemptNumber: 1, status: 'sent' }] });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { postgres: 'ok', redis: 'ok', loops: 'ok' } });
    const text = await metricsText(engine);
    for (const name of [
      'mail_attempt_schedule_depth',
      'mail_attempt_schedule_oldest_age_ms',
      'mail_delivery_dead_letters_total',
      'mail_stream_commands_malformed_total',
      'mail_provider_send_duration_ms_bucket',
      'mail_attempt_outcomes_total',
      'mail_delivery_suppressed_total',
      'mail_loop_heartbeat_age_ms',
    ]) {
      expect(text, name).toContain(`${name}{`);
    }
    expect(metricValue(text, 'mail_loop_heartbeat_age_ms{loop="stream-consumer"}')).toBeLessThan(10_000);
    // The heartbeat loop writes every interval; on a loaded machine the first write may still be due.
    const expected = ['heartbeat', 'retention', 'scheduler', 'stream-consumer', 'attempt-worker-0'];
    const loops = await waitFor(
      "every loop's heartbeat row in mail.workers",
      async () =>
        (await db.pool.query<{ loop: string }>("SELECT loop FROM mail.workers WHERE worker_id = $1 AND state = 'running' ORDER BY loop", [engine.workerId])).rows.map(
          (row) => row.loop,
        ),
      (seen) => expected.every((loop) => seen.includes(loop)),
    );
    expect(loops).toEqual(expect.arrayContaining(expected));
  });

  it('silent-encoding-change: a command that decodes but whose acceptance keeps failing (not bad data, not an outage) is quarantined as handling_failed after 5 handlings, and the stream flows again', async () => {
    const poisoned = unique('poisoned');
    // A real non-transient failure in the acceptance transaction: a trigger raising P0001
    // (raise_exception) for this recipient alone, the way a broken migration or extension would.
    await db.pool.query(`
      CREATE FUNCTION e2e_refuse_poisoned() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.recipient LIKE 'poisoned-%' THEN
          RAISE EXCEPTION 'e2e: deliveries to % are refused by a trigger', NEW.recipient USING ERRCODE = 'P0001';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER e2e_poison BEFORE INSERT ON mail.deliveries FOR EACH ROW EXECUTE FUNCTION e2e_refuse_poisoned();`);
    try {
      const restartsBefore = metricValue(await metricsText(engine), 'mail_loop_restarts_total{loop="stream-consumer"}') || 0;
      const poison = await xadd(v2({ source: 'billing', idempotencyKey: randomUUID(), to: poisoned, payload: { mode: 'rendered', subject: 'poison', text: 'x' } }));
      const behind = unique('behind-poison');
      await xadd(v2({ source: 'billing', idempotencyKey: randomUUID(), to: behind, payload: { mode: 'rendered', subject: 'behind the poison', text: 'flows' } }));

      const { rows } = await waitFor(
        'the poison entry quarantined',
        () => db.pool.query('SELECT failure_code, failure_detail, source FROM mail.malformed_commands WHERE stream_entry_id = $1', [poison]),
        (result) => result.rows.length === 1,
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      expect(rows[0]).toMatchObject({ failure_code: 'handling_failed', source: 'billing' });
      expect(rows[0].failure_detail).toContain('failed 5 times');
      expect(rows[0].failure_detail).toContain(`deliveries to ${poisoned} are refused by a trigger (SQLSTATE P0001)`);
      const [mail] = await waitForSinkEmails(behind, 1, { timeoutMs: 30_000 });
      expect(mail?.subject).toBe('behind the poison');
      await waitFor('every entry acknowledged', pendingCount, (n) => n === 0);
      const delivered = await db.pool.query('SELECT count(*)::int AS n FROM mail.deliveries WHERE recipient = $1', [poisoned]);
      expect(delivered.rows[0].n).toBe(0);
      const text = await metricsText(engine);
      expect(metricValue(text, 'mail_stream_commands_malformed_total{failure_code="handling_failed"}')).toBe(1);
      // Four failed handlings restarted the loop; the fifth quarantined the entry.
      expect(metricValue(text, 'mail_loop_restarts_total{loop="stream-consumer"}') - restartsBefore).toBe(4);
    } finally {
      await db.pool.query('DROP TRIGGER e2e_poison ON mail.deliveries; DROP FUNCTION e2e_refuse_poisoned()');
    }
  });
});
