// One SMTP message must not stop all delivery: a relayed message whose headers hold a NUL,
// invalid UTF-8 or a 64 KiB line, refused with 550 by the relay, made the bounce insert fail, the
// outcome batch roll back, and then the reclaim's dead-letter transaction fail on every scheduler
// pass — the engine never claimed again. Here every such message, refused and accepted, is followed
// by ordinary mail that must still go out; and where PostgreSQL refuses a row for a reason nobody
// foresaw (a trigger raising, standing in for it), the row is isolated — recorded without the part
// that failed, or skipped — counted in mail_poison_items_total, and the engine goes on.
import { createDeliveryLifecycle, createLogger } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lostLeaseEnding } from '../../apps/core/src/delivery/fail-for-good.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import { reclaimLeases } from '../../apps/core/src/queue/reclaim-leases.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import {
  attemptsOf,
  deliveryRow,
  insertAcceptedMessage,
  insertRelayedMessage,
  metricsText,
  metricValue,
  SENDER,
  startTestEngine,
  testCatalog,
  unique,
  waitForStatus,
} from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

// MAIL_RETRY_LADDER of three waits: the fourth attempt is the last.
const MAX_ATTEMPTS = 4;

let db: TestDatabase;
let engine: Engine;
let smtp: ScriptedSmtp;

const POISONS: Record<string, Buffer> = {
  nul: Buffer.from('before \u0000 after'),
  'invalid UTF-8': Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x20, 0x62, 0x79, 0x74, 0x65, 0x73]),
  '64 KiB line': Buffer.from('x'.repeat(64 * 1024)),
};
// Subject is quoted by the bounce; From, Message-ID, To and Date are what the edge parses; Received is
// what a hop count reads. The bounce quotes the whole header block.
const HEADERS = ['Subject', 'From', 'Message-ID', 'To', 'Date', 'Received'] as const;

function poisonedMessage(header: (typeof HEADERS)[number], poison: Buffer, recipient: string): Buffer {
  const ordinary: Record<(typeof HEADERS)[number], string> = {
    Received: `from client.outside.test by mx.postern.test with ESMTP id x; ${new Date().toUTCString()}`,
    From: '<someone@outside.test>',
    To: `<${recipient}>`,
    Subject: 'ordinary subject',
    Date: new Date().toUTCString(),
    'Message-ID': '<ordinary@outside.test>',
  };
  const lines = (Object.keys(ordinary) as Array<(typeof HEADERS)[number]>).map((name) =>
    Buffer.concat([Buffer.from(`${name}: `), name === header ? poison : Buffer.from(ordinary[name]), Buffer.from('\r\n')]),
  );
  return Buffer.concat([...lines, Buffer.from('\r\nThe body.\r\n')]);
}

async function poisonCount(loop: string, reason: string): Promise<number> {
  return metricValue(await metricsText(engine), `mail_poison_items_total{loop="${loop}",reason="${reason}"}`) || 0;
}

/** As if an engine had claimed the delivery for its last attempt and died: the lease ran out. */
async function leaseToDeadEngine(deliveryId: string, engineName = 'dead-engine', on: TestDatabase = db, expiredMs = 1_000): Promise<void> {
  const { rowCount } = await on.pool.query(
    `UPDATE mail.deliveries
        SET status = 'sending', locked_by = $3, locked_until = now() - $4::int * interval '1 millisecond', next_attempt_at = NULL, attempt_count = $2
      WHERE id = $1`,
    [deliveryId, MAX_ATTEMPTS, engineName, expiredMs],
  );
  expect(rowCount).toBe(1);
}

/** Ordinary mail queued after the poison: it must go out. */
async function ordinaryMailGoesOut(): Promise<void> {
  const { deliveryId } = await insertAcceptedMessage(db.pool, unique('ordinary-sender'), unique('ordinary'));
  await waitForStatus(db.pool, deliveryId, 'sent', 30_000);
}

async function bouncesTo(sender: string): Promise<Array<{ id: string; subject: string | null; status: string }>> {
  const { rows } = await db.pool.query(
    `SELECT d.id, m.subject, d.status FROM mail.deliveries d JOIN mail.messages m ON m.id = d.message_id
      WHERE d.source = 'postern-dsn' AND d.recipient = $1`,
    [sender],
  );
  return rows;
}

/** A trigger raising P0001 (raise_exception) on some rows: a non-transient refusal nobody foresaw,
 *  the way a broken migration or extension would refuse them. Each kind is written out whole. */
const REFUSING_TRIGGERS = {
  // The bounce's message row, told by its Subject.
  'bounce subject': {
    create: `
      CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.subject LIKE '%e2e-unstorable%' THEN RAISE EXCEPTION 'e2e: refused by a trigger' USING ERRCODE = 'P0001'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER e2e_refuse BEFORE INSERT ON mail.messages FOR EACH ROW EXECUTE FUNCTION e2e_refuse();`,
    drop: 'DROP TRIGGER e2e_refuse ON mail.messages; DROP FUNCTION e2e_refuse()',
  },
  // Every attempt row recorded for one engine.
  'attempt worker': {
    create: `
      CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.worker_id = 'e2e-cursed-engine' THEN RAISE EXCEPTION 'e2e: refused by a trigger' USING ERRCODE = 'P0001'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER e2e_refuse BEFORE INSERT ON mail.attempts FOR EACH ROW EXECUTE FUNCTION e2e_refuse();`,
    drop: 'DROP TRIGGER e2e_refuse ON mail.attempts; DROP FUNCTION e2e_refuse()',
  },
} as const;

async function withRefusingTrigger(kind: keyof typeof REFUSING_TRIGGERS, body: () => Promise<void>, on: TestDatabase = db): Promise<void> {
  await on.pool.query(REFUSING_TRIGGERS[kind].create);
  try {
    await body();
  } finally {
    await on.pool.query(REFUSING_TRIGGERS[kind].drop);
  }
}

beforeAll(async () => {
  db = await createTestDatabase('core-poison-delivery');
  smtp = await startScriptedSmtp();
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}` });
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await db?.drop();
});

describe('poisoned headers in relayed mail', () => {
  const cases = HEADERS.flatMap((header) => Object.keys(POISONS).flatMap((poison) => (['refused', 'accepted'] as const).map((relay) => ({ header, poison, relay }))));

  it.each(cases)('$poison in $header, $relay by the relay: ends as it should, and ordinary mail behind it still goes out', async ({ header, poison, relay }) => {
    const sender = unique('poison-sender');
    const recipient = unique('poison-rcpt');
    if (relay === 'refused') smtp.script(recipient, [{ code: 550, message: '5.1.1 no such user' }]);
    const raw = poisonedMessage(header, POISONS[poison] as Buffer, recipient);
    const id = await insertRelayedMessage(db.pool, sender, recipient, raw);
    await ordinaryMailGoesOut();

    if (relay === 'accepted') {
      await waitForStatus(db.pool, id, 'sent');
      // Relayed as stored: the bytes are not "repaired" on the way.
      const relayed = smtp.messages.find((message) => message.to.includes(recipient));
      expect(relayed?.raw.equals(raw)).toBe(true);
      return;
    }
    const row = await waitForStatus(db.pool, id, 'failed');
    expect(row?.last_error).toContain('550');
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ status: 'provider_rejected', smtp_code: 550 }]);
    // The bounce is queued with the failure and reaches the sender: sanitised, bounded.
    const [bounce] = await bouncesTo(sender);
    expect(bounce).toBeDefined();
    await waitForStatus(db.pool, bounce?.id as string, 'sent');
    const dsn = smtp.messages.find((message) => message.to.includes(sender));
    expect(dsn?.from).toBe('');
    expect(dsn?.raw.includes(0)).toBe(false);
    for (const line of dsn?.raw.toString('utf8').split('\r\n') ?? []) expect(line.length).toBeLessThanOrEqual(998);
    expect(dsn?.raw.length).toBeLessThan(48 * 1024);
    if (header === 'Subject' && poison === 'nul') expect(bounce?.subject).toBe('Undelivered Mail Returned to Sender: before \u2400 after');
    if (header === 'Subject' && poison === 'invalid UTF-8') expect(bounce?.subject).toContain('bad \ufffd');
  });
});

describe('an outcome PostgreSQL refuses even alone (completion batcher)', () => {
  it('is recorded without its attempt row and bounce, with the refusal as its reason, counted; ordinary mail goes on', async () => {
    await withRefusingTrigger('bounce subject', async () => {
      const before = await poisonCount('completion', 'outcome_recorded_bare');
      const sender = unique('unstorable-sender');
      const recipient = unique('unstorable-rcpt');
      smtp.script(recipient, [{ code: 550, message: '5.1.1 no such user' }]);
      const raw = Buffer.from(`From: <${sender}>\r\nTo: <${recipient}>\r\nSubject: e2e-unstorable\r\n\r\nbody\r\n`);
      const id = await insertRelayedMessage(db.pool, sender, recipient, raw);
      await ordinaryMailGoesOut();
      const row = await waitForStatus(db.pool, id, 'failed');
      expect(row?.last_error).toMatch(/^could not record outcome \(failed: .*550.*\): e2e: refused by a trigger \(SQLSTATE P0001\)$/);
      expect(await attemptsOf(db.pool, id)).toEqual([]);
      expect(await bouncesTo(sender)).toEqual([]);
      expect(await poisonCount('completion', 'outcome_recorded_bare')).toBe(before + 1);
    });
  });
});

describe('the lease reclaim with a poisoned row', () => {
  it('a NUL Subject, lease expired with the ladder spent — dead-lettered with a sanitised bounce, and claiming goes on', async () => {
    const sender = unique('reclaim-nul-sender');
    const recipient = unique('reclaim-nul');
    const id = await insertRelayedMessage(db.pool, sender, recipient, poisonedMessage('Subject', POISONS.nul as Buffer, recipient), { notDue: true });
    await leaseToDeadEngine(id);
    await ordinaryMailGoesOut();
    await waitForStatus(db.pool, id, 'dead_letter');
    const [bounce] = await bouncesTo(sender);
    expect(bounce?.subject).toBe('Undelivered Mail Returned to Sender: before \u2400 after');
    await waitForStatus(db.pool, bounce?.id as string, 'sent');
  });

  it('a row whose bounce cannot be stored is dead-lettered without it, the refusal in its reason, counted; ordinary mail goes on', async () => {
    await withRefusingTrigger('bounce subject', async () => {
      const before = await poisonCount('reclaim', 'dead_lettered_without_bounce');
      const sender = unique('reclaim-unstorable-sender');
      const recipient = unique('reclaim-unstorable');
      const raw = Buffer.from(`From: <${sender}>\r\nTo: <${recipient}>\r\nSubject: e2e-unstorable\r\n\r\nbody\r\n`);
      const id = await insertRelayedMessage(db.pool, sender, recipient, raw, { notDue: true });
      await leaseToDeadEngine(id);
      await ordinaryMailGoesOut();
      const row = await waitForStatus(db.pool, id, 'dead_letter');
      expect(row?.last_error).toContain('no bounce was sent: storing it failed: e2e: refused by a trigger (SQLSTATE P0001)');
      const { rows } = await db.pool.query('SELECT reason FROM mail.dead_letters WHERE delivery_id = $1', [id]);
      expect(rows[0]?.reason).toBe(row?.last_error);
      expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: MAX_ATTEMPTS, status: 'outcome_unknown' }]);
      expect(await bouncesTo(sender)).toEqual([]);
      expect(await poisonCount('reclaim', 'dead_lettered_without_bounce')).toBe(before + 1);
    });
  });

  it('a row that cannot be taken back at all is skipped, counted and retried; claims go on, and it is taken back once it can be', async () => {
    const id = (await insertAcceptedMessage(db.pool, unique('cursed-sender'), unique('cursed'), { notDue: true })).deliveryId;
    await withRefusingTrigger('attempt worker', async () => {
      const before = await poisonCount('reclaim', 'row_skipped');
      await leaseToDeadEngine(id, 'e2e-cursed-engine');
      await waitFor('the cursed row skipped', () => poisonCount('reclaim', 'row_skipped'), (n) => n > before, { timeoutMs: 20_000, intervalMs: 200 });
      await ordinaryMailGoesOut();
      expect((await db.pool.query('SELECT status FROM mail.deliveries WHERE id = $1', [id])).rows[0]?.status).toBe('sending');
    });
    await waitForStatus(db.pool, id, 'dead_letter');
  });
});

describe('the reclaim pages past rows it cannot take back', () => {
  it('more unreclaimable rows than one pass looks at do not hide a younger expired lease', async () => {
    // A database of its own and no engine: only the pass under test takes leases back.
    const own = await createTestDatabase('core-reclaim-paging');
    try {
      const cursed: string[] = [];
      for (let i = 0; i < 3; i++) {
        const id = (await insertAcceptedMessage(own.pool, unique('paging-sender'), unique('paging-cursed'))).deliveryId;
        await leaseToDeadEngine(id, 'e2e-cursed-engine', own, 60_000 - i);
        cursed.push(id);
      }
      const younger = (await insertAcceptedMessage(own.pool, unique('paging-sender'), unique('paging-younger'))).deliveryId;
      await leaseToDeadEngine(younger, 'dead-engine', own, 1_000);
      await withRefusingTrigger(
        'attempt worker',
        async () => {
          const logger = createLogger('e2e', 'silent');
          const endLostLease = lostLeaseEnding({ catalog: testCatalog(), reportingMta: 'mx.postern.test', sender: SENDER, logger });
          // Two per page: the first page holds only cursed rows.
          const lifecycle = createDeliveryLifecycle(own.pool);
          const taken = await reclaimLeases({ lifecycle, limit: 2, maxAttempts: MAX_ATTEMPTS, leaseMs: 30_000, endLostLease, logger });
          expect(taken).toMatchObject({ reclaimed: 1, deadLettered: 1, bounces: 1, skipped: 3 });
          expect((await deliveryRow(own.pool, younger))?.status).toBe('dead_letter');
          for (const id of cursed) expect((await deliveryRow(own.pool, id))?.status).toBe('sending');
        },
        own,
      );
    } finally {
      await own.drop();
    }
  });
});
