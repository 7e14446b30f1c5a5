// Urgent mail first: a login code queued behind a backlog of 300 notifications is claimed by the
// engine's first claim and reaches the relay first — without priority it would wait for the whole
// backlog (oldest first). The priority is decided once, at intake, from the
// category (MAIL_URGENT_CATEGORIES, default authsession): stored on the row, indexed with the due
// time, so the claim's order costs nothing more.
import { acceptCommand, DEFAULT_URGENT_CATEGORIES, readScheduleStats } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { queueDelivery, SENDER, startTestEngine, testCatalog, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let smtp: ScriptedSmtp;
let engine: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-urgent-first');
  smtp = await startScriptedSmtp();
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await db?.drop();
});

async function priorityOf(id: string): Promise<number | undefined> {
  const { rows } = await db.pool.query<{ priority: number }>('SELECT priority FROM mail.deliveries WHERE id = $1', [id]);
  return rows[0]?.priority;
}

describe('urgent deliveries are claimed before a backlog', () => {
  it('a login code queued after 300 notifications reaches the relay first', async () => {
    const backlog = Array.from({ length: 300 }, (_, i) => unique(`bulk-${i}`));
    for (const recipient of backlog) await queueDelivery(db.pool, { recipient, category: 'notification' });
    const urgent = unique('login-code');
    const urgentId = await queueDelivery(db.pool, { recipient: urgent, category: 'authsession' });
    expect(await priorityOf(urgentId)).toBe(0);
    // The queue's gauges find the longest-due delivery in either priority (one index lookup each):
    // made due an hour ago, the login code is the oldest due.
    await db.pool.query(`UPDATE mail.deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`, [urgentId]);
    const stats = await readScheduleStats(db.pool);
    expect(stats.due).toBe(301);
    expect(stats.dueLagMs).toBeGreaterThanOrEqual(3_600_000);

    // One worker, so the relay sees the messages in the order they were claimed (with several, one
    // send may overtake another); oldest first, the login code would be the 301st.
    engine = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`, MAIL_ATTEMPT_WORKER_CONCURRENCY: '1' });
    await waitFor('all 301 messages at the relay', () => smtp.messages.length, (count) => count >= 301, { timeoutMs: 60_000 });
    const order = smtp.messages.flatMap((message) => message.to);
    expect(order.indexOf(urgent)).toBe(0);
    // The backlog itself still went oldest first, and every message once.
    expect(order.slice(1)).toEqual(backlog);
  });

  it('the priority follows MAIL_URGENT_CATEGORIES at intake; the edge and everything else are not urgent', async () => {
    const command = (category: string | null) => ({
      schemaVersion: '2' as const,
      source: 'e2e',
      idempotencyKey: `k-${Math.random().toString(36).slice(2)}`,
      deliveryId: null,
      category,
      payload: { mode: 'rendered' as const, subject: 'hello', text: 'hello', html: null },
      traceparent: null,
      recipient: unique('priority'),
    });
    const created = async (category: string | null, urgentCategories?: readonly string[]) => {
      const outcome = await acceptCommand(db.pool, command(category), { catalog: testCatalog(), sender: SENDER, ...(urgentCategories ? { urgentCategories } : {}) });
      if (outcome.status !== 'created') throw new Error(`not created: ${outcome.status}`);
      return priorityOf(outcome.deliveryId);
    };
    expect(DEFAULT_URGENT_CATEGORIES).toEqual(['authsession']);
    expect(await created('authsession')).toBe(0);
    expect(await created('notification')).toBe(1);
    expect(await created(null)).toBe(1);
    expect(await created('alerts', ['alerts', 'authsession'])).toBe(0);
    expect(await created('authsession', [])).toBe(1);
    // A template's own category counts: login-code is authsession.
    const login = await acceptCommand(
      db.pool,
      { ...command(null), payload: { mode: 'template', templateId: 'login-code', locale: 'en', variables: { code: '123456', expiresInMinutes: 10 } } },
      { catalog: testCatalog(), sender: SENDER },
    );
    if (login.status !== 'created') throw new Error(`not created: ${login.status}`);
    expect(await priorityOf(login.deliveryId)).toBe(0);
    // Rows the edge inserts do not name a priority: the column's default.
    const { rows } = await db.pool.query<{ column_default: string }>(
      `SELECT column_default FROM information_schema.columns WHERE table_schema = 'mail' AND table_name = 'deliveries' AND column_name = 'priority'`,
    );
    expect(rows[0]?.column_default).toBe('1');
  });
});
