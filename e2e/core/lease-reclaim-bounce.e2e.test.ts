// A delivery whose lease runs out with its retry ladder spent is dead-lettered by whichever engine
// takes the lease back (stalled-worker: so one that kills every engine cannot loop forever). No attempt
// worker sees it fail, so the reclaim itself must bounce accepted mail to its sender — in the same
// transaction as the dead letter — or the mail the edge said 250 for would vanish silently.
// The engine runs no maintenance timers here: the test triggers the reclaim pass itself and checks
// the pass's own account of what it did, then what it left in the database and at the sink.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { ReclaimResult } from '../../apps/core/src/queue/reclaim-leases.ts';
import { createTestDatabase, type TestDatabase, waitForSinkEmails } from '../harness/index.ts';
import { attemptsOf, insertAcceptedMessage, metricsText, metricValue, queueDelivery, startTestEngine, unique, waitForStatus } from './helpers/engine.ts';

// MAIL_RETRY_LADDER of three waits: the fourth attempt is the last.
const LADDER = '300ms,300ms,300ms';
const MAX_ATTEMPTS = 4;

let db: TestDatabase;
let engine: Engine;
let pass: ReclaimResult;

/** As if an engine had claimed the delivery for its last attempt and died: the lease ran out. */
async function leaseToDeadEngine(deliveryId: string): Promise<void> {
  const { rowCount } = await db.pool.query(
    `UPDATE mail.deliveries
        SET status = 'sending', locked_by = 'dead-engine', locked_until = now() - interval '1 second',
            next_attempt_at = NULL, attempt_count = $2
      WHERE id = $1`,
    [deliveryId, MAX_ATTEMPTS],
  );
  expect(rowCount).toBe(1);
}

const sender = unique('reclaim-sender');
const withSender = unique('reclaim-dead');
const nullSender = unique('reclaim-dead-null');
const fromProducer = unique('reclaim-dead-command');
const ids: Record<'withSender' | 'nullSender' | 'fromProducer', string> = { withSender: '', nullSender: '', fromProducer: '' };

beforeAll(async () => {
  db = await createTestDatabase('core-reclaim-bounce');
  // Leased by a dead engine whose leases ran out; the live engine takes them back when asked.
  ids.withSender = (await insertAcceptedMessage(db.pool, sender, withSender)).deliveryId;
  ids.nullSender = (await insertAcceptedMessage(db.pool, '', nullSender)).deliveryId;
  ids.fromProducer = await queueDelivery(db.pool, { recipient: fromProducer });
  for (const id of Object.values(ids)) await leaseToDeadEngine(id);
  const sink = inject('postern').maildev;
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `${sink.host}:${sink.smtpPort}`, MAIL_RETRY_LADDER: LADDER }, { maintenanceLoops: false });
  pass = await engine.maintenance.reclaimExpiredLeases();
});

afterAll(async () => {
  await engine?.stop();
  await db?.drop();
});

describe('a lease that runs out with the ladder spent', () => {
  it('dead-letters accepted mail once and bounces it to its sender in the same transaction; the bounce reaches the sink', async () => {
    expect(pass).toEqual({ reclaimed: 3, deadLettered: 3, bounces: 1, unbounced: 0, skipped: 0 });
    await waitForStatus(db.pool, ids.withSender, 'dead_letter');
    const deadLetters = await db.pool.query('SELECT reason FROM mail.dead_letters WHERE delivery_id = $1', [ids.withSender]);
    expect(deadLetters.rows).toHaveLength(1);
    expect(deadLetters.rows[0].reason).toContain('last attempt lost with its lease');
    expect(await attemptsOf(db.pool, ids.withSender)).toMatchObject([{ attempt_number: MAX_ATTEMPTS, status: 'outcome_unknown' }]);

    // The dead letter and its bounce commit together: once one is visible, so is the other.
    const bounces = await db.pool.query(
      "SELECT id, envelope_from, category, payload_mode FROM mail.deliveries WHERE source = 'postern-dsn' AND recipient = $1",
      [sender],
    );
    expect(bounces.rows).toEqual([{ id: expect.any(String), envelope_from: '', category: 'bounce', payload_mode: 'relay' }]);

    const [mail] = await waitForSinkEmails(sender, 1);
    expect(mail?.subject).toContain('Minutes of the meeting');
    expect(mail?.from[0]?.address).toBe('MAILER-DAEMON@postern.test');
    expect(mail?.text).toContain(`<${withSender}>`);
    expect(mail?.text).toContain(`after ${MAX_ATTEMPTS} attempt(s): retry ladder exhausted; the last attempt was lost with its lease`);
    await waitForStatus(db.pool, bounces.rows[0].id, 'sent');
  });

  it('bounces neither mail from the null sender nor a command of an internal producer', async () => {
    for (const id of [ids.nullSender, ids.fromProducer]) {
      await waitForStatus(db.pool, id, 'dead_letter');
      const deadLetters = await db.pool.query('SELECT count(*)::int AS n FROM mail.dead_letters WHERE delivery_id = $1', [id]);
      expect(deadLetters.rows[0].n).toBe(1);
    }
    const { rows } = await db.pool.query("SELECT recipient FROM mail.deliveries WHERE source = 'postern-dsn'");
    expect(rows).toEqual([{ recipient: sender }]);
    const text = await metricsText(engine);
    expect(metricValue(text, 'mail_delivery_bounces_total')).toBe(1);
    expect(metricValue(text, 'mail_delivery_dead_letters_total')).toBe(3);
    expect(metricValue(text, 'mail_attempt_leases_reclaimed_total')).toBe(3);
  });
});
