// What each SMTP outcome does to a delivery, against a misbehaving SMTP server inside the test:
// 4xx retries up the (shortened) ladder, 5xx fails at once, a spent ladder dead-letters exactly once,
// a silent server times out and a later attempt succeeds, a timeout after DATA is recorded as
// outcome unknown, the suppression list is honoured, and mail the edge accepted is relayed byte for
// byte — or bounced to its sender (RFC 3464) when it fails for good.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { attemptsOf, insertAcceptedMessage, metricsText, metricValue, queueDelivery, startTestEngine, unique, waitForStatus } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp, startSilentFrontDoor } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let engine: Engine;
let smtp: ScriptedSmtp;
let frontDoor: Awaited<ReturnType<typeof startSilentFrontDoor>>;

beforeAll(async () => {
  db = await createTestDatabase('core-outcomes');
  smtp = await startScriptedSmtp();
  // The first connection is accepted and then never greeted; the rest reach the scripted server.
  frontDoor = await startSilentFrontDoor({ host: '127.0.0.1', port: smtp.port }, 1);
  engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${frontDoor.port}`, MAIL_SMTP_TIMEOUT: '1s' });
});

afterAll(async () => {
  await engine?.stop();
  await frontDoor?.close();
  await smtp?.close();
  await db?.drop();
});

describe('attempt outcomes', () => {
  it('a sink that accepts the connection and then hangs: the attempt times out and a later attempt succeeds', async () => {
    const recipient = unique('hang');
    const id = await queueDelivery(db.pool, { recipient });
    await waitForStatus(db.pool, id, 'sent');
    expect(frontDoor.hung()).toBe(1);
    expect(await attemptsOf(db.pool, id)).toMatchObject([
      { attempt_number: 1, status: 'timed_out', smtp_code: null },
      { attempt_number: 2, status: 'sent', smtp_code: 250 },
    ]);
    expect(smtp.accepted.get(recipient)).toBe(1);
  });

  it('4xx twice, then success: sent on the third attempt', async () => {
    const recipient = unique('4xx');
    smtp.script(recipient, [{ code: 451, message: '4.7.1 greylisted, try again later' }, { code: 450, message: '4.2.1 mailbox busy' }, 'accept']);
    const id = await queueDelivery(db.pool, { recipient });
    await waitForStatus(db.pool, id, 'sent');
    expect(await attemptsOf(db.pool, id)).toMatchObject([
      { attempt_number: 1, status: 'transport_failed', smtp_code: 451 },
      { attempt_number: 2, status: 'transport_failed', smtp_code: 450 },
      { attempt_number: 3, status: 'sent', smtp_code: 250 },
    ]);
    expect(smtp.accepted.get(recipient)).toBe(1);
  });

  it('5xx: failed at once, never retried', async () => {
    const recipient = unique('5xx');
    smtp.script(recipient, [{ code: 550, message: '5.1.1 no such user' }, 'accept']);
    const id = await queueDelivery(db.pool, { recipient });
    const row = await waitForStatus(db.pool, id, 'failed');
    expect(row?.last_error).toContain('bad_recipient: 550 5.1.1 no such user');
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'provider_rejected', smtp_code: 550 }]);
    expect(smtp.seen.get(recipient)).toBe(1);
    // A command's delivery is not mail the edge accepted: no bounce is written for it.
    const bounces = await db.pool.query("SELECT count(*)::int AS n FROM mail.deliveries WHERE source = 'postern-dsn' AND message_id IN (SELECT id FROM mail.messages WHERE $1 = ANY(envelope_to))", [recipient]);
    expect(bounces.rows[0].n).toBe(0);
  });

  it('the ladder exhausted (shortened in config): dead letter, with exactly one dead-letter row', async () => {
    const before = metricValue(await metricsText(engine), 'mail_delivery_dead_letters_total');
    const recipient = unique('ladder');
    smtp.script(recipient, Array.from({ length: 6 }, () => ({ code: 451, message: '4.4.1 no answer from host' })));
    const id = await queueDelivery(db.pool, { recipient });
    await waitForStatus(db.pool, id, 'dead_letter');
    const attempts = await attemptsOf(db.pool, id);
    expect(attempts.map((attempt) => attempt.status)).toEqual(['transport_failed', 'transport_failed', 'transport_failed', 'transport_failed']);
    const { rows } = await db.pool.query('SELECT reason FROM mail.dead_letters WHERE delivery_id = $1', [id]);
    expect(rows).toHaveLength(1);
    expect(rows[0].reason).toContain('retry ladder exhausted after 4 attempts');
    expect(smtp.seen.get(recipient)).toBe(4);
    expect(metricValue(await metricsText(engine), 'mail_delivery_dead_letters_total') - before).toBe(1);
  });

  it('a timeout after the data was sent is recorded as outcome_unknown, then retried', async () => {
    const recipient = unique('after-data');
    smtp.script(recipient, ['hang', 'accept']);
    const id = await queueDelivery(db.pool, { recipient });
    await waitForStatus(db.pool, id, 'sent');
    expect(await attemptsOf(db.pool, id)).toMatchObject([
      { attempt_number: 1, status: 'outcome_unknown' },
      { attempt_number: 2, status: 'sent' },
    ]);
  });

  it('a suppressed recipient is never attempted', async () => {
    const recipient = unique('suppressed');
    await db.pool.query("INSERT INTO mail.suppressions (address, reason) VALUES ($1, 'hard_bounce')", [recipient]);
    const id = await queueDelivery(db.pool, { recipient });
    const row = await waitForStatus(db.pool, id, 'suppressed');
    expect(row?.last_error).toContain('suppression list (hard_bounce)');
    expect(row?.attempt_count).toBe(0);
    expect(smtp.seen.get(recipient)).toBeUndefined();
    expect(metricValue(await metricsText(engine), 'mail_delivery_suppressed_total{reason="suppression_list"}')).toBeGreaterThanOrEqual(1);
  });
});

describe('mail the edge accepted', () => {
  it('is relayed byte for byte with its envelope sender kept', async () => {
    const recipient = unique('relay');
    const { deliveryId, raw } = await insertAcceptedMessage(db.pool, 'alice@outside.test', recipient);
    await waitForStatus(db.pool, deliveryId, 'sent');
    const relayed = smtp.messages.find((message) => message.to.includes(recipient));
    expect(relayed?.from).toBe('alice@outside.test');
    expect(relayed?.raw.equals(raw)).toBe(true);
  });

  it('that fails permanently produces an RFC 3464 bounce to its sender, from the null reverse-path', async () => {
    const recipient = unique('relay-5xx');
    const sender = unique('sender');
    smtp.script(recipient, [{ code: 550, message: '5.1.1 mailbox does not exist' }]);
    const { deliveryId } = await insertAcceptedMessage(db.pool, sender, recipient);
    await waitForStatus(db.pool, deliveryId, 'failed');
    await waitFor('the bounce at the sink', () => smtp.accepted.get(sender) ?? 0, (n) => n === 1);
    const bounce = smtp.messages.find((message) => message.to.includes(sender));
    expect(bounce?.from).toBe('');
    const text = bounce?.raw.toString('utf8') ?? '';
    expect(text).toContain('Content-Type: multipart/report; report-type=delivery-status;');
    expect(text).toContain(`Final-Recipient: rfc822; ${recipient}`);
    expect(text).toContain('Status: 5.1.1');
    expect(text).toContain('Subject: Minutes of the meeting');
    expect(text).not.toContain('Line one.');
  });

  it('that dead-letters is bounced too, but never to the null sender', async () => {
    const withSender = unique('relay-dead');
    const nullSender = unique('relay-dead-null');
    const sender = unique('sender2');
    for (const recipient of [withSender, nullSender]) smtp.script(recipient, Array.from({ length: 6 }, () => ({ code: 450, message: '4.2.1 mailbox busy' })));
    const first = await insertAcceptedMessage(db.pool, sender, withSender);
    const second = await insertAcceptedMessage(db.pool, '', nullSender);
    await waitForStatus(db.pool, first.deliveryId, 'dead_letter');
    await waitForStatus(db.pool, second.deliveryId, 'dead_letter');
    await waitFor('the bounce at the sink', () => smtp.accepted.get(sender) ?? 0, (n) => n === 1);
    expect(smtp.messages.find((message) => message.to.includes(sender))?.raw.toString()).toContain('Status: 4.2.1');
    // Two bounces in this file: the 5xx one above and this one; none for the null sender.
    const { rows } = await db.pool.query("SELECT recipient FROM mail.deliveries WHERE source = 'postern-dsn' ORDER BY created_at");
    expect(rows).toHaveLength(2);
    expect(rows[1]?.recipient).toBe(sender);
  });
});
