// The queue lifetime (MAIL_QUEUE_LIFETIME) is measured on PostgreSQL's clock, as queued_since is
// written: an engine whose own clock runs hours ahead (a host clock set to local time, NTP not
// running) must not end mail that has waited a few seconds. The engine's clock is moved here with
// fake Dates that keep running; PostgreSQL's is the real one.
// What was wrong before: the worker compared queued_since (PostgreSQL's now() at insert) with the
// engine's own Date, so with the engine 2 h ahead and a lifetime of 1 h the first 451 of a greylisting
// relay dead-lettered and bounced a delivery queued a moment before, instead of retrying it.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { insertAcceptedMessage, startTestEngine } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let smtp: ScriptedSmtp;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-queue-lifetime-clock');
  smtp = await startScriptedSmtp();
});

afterAll(async () => {
  await engine?.stop();
  vi.useRealTimers();
  await smtp?.close();
  await db?.drop();
});

describe("an engine whose clock runs ahead of PostgreSQL's", () => {
  it('retries a delivery queued a moment ago instead of ending it as if its lifetime were over', async () => {
    const recipient = 'rcpt@greylist.test';
    smtp.script(recipient, [{ code: 451, message: '4.7.1 greylisted, try again later' }, 'accept']);
    const { deliveryId } = await insertAcceptedMessage(db.pool, 'sender@outside.test', recipient);
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + 2 * 3_600_000);
    engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`, MAIL_QUEUE_LIFETIME: '1h' });

    const ended = await waitFor(
      'the delivery to end',
      async () => (await db.pool.query<{ status: string; last_error: string | null }>('SELECT status, last_error FROM mail.deliveries WHERE id = $1', [deliveryId])).rows[0],
      (row) => row?.status === 'sent' || row?.status === 'dead_letter',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(ended).toMatchObject({ status: 'sent' });
    expect(smtp.accepted.get(recipient)).toBe(1);
  });
});
