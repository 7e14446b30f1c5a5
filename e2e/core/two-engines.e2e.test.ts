// Two engines share one queue (SKIP LOCKED claims): under normal operation every delivery arrives
// exactly once — counted at the SMTP server — and both engines do part of the work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { queueDelivery, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let engines: Engine[] = [];
let smtp: ScriptedSmtp;

beforeAll(async () => {
  db = await createTestDatabase('core-two-engines');
  smtp = await startScriptedSmtp();
  const env = { MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`, MAIL_CLAIM_BATCH_SIZE: '8' };
  engines = await Promise.all([startTestEngine(db.dsn, env), startTestEngine(db.dsn, env)]);
});

afterAll(async () => {
  await Promise.all(engines.map((engine) => engine.stop()));
  await smtp?.close();
  await db?.drop();
});

describe('two engines sharing the queue', () => {
  it('deliver every one of 300 deliveries exactly once', async () => {
    const recipients = Array.from({ length: 300 }, (_, i) => unique(`pair-${i}`));
    await Promise.all(recipients.map((recipient) => queueDelivery(db.pool, { recipient })));
    await waitFor(
      'all 300 sent',
      () => db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE status = 'sent'"),
      (result) => result.rows[0]?.n === 300,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const counts = recipients.map((recipient) => smtp.accepted.get(recipient) ?? 0);
    expect(counts.filter((n) => n !== 1)).toEqual([]);
    expect(smtp.messages.filter((message) => recipients.includes(message.to[0] as string))).toHaveLength(300);
    const { rows } = await db.pool.query<{ worker_id: string; n: number }>('SELECT worker_id, count(*)::int AS n FROM mail.attempts GROUP BY worker_id');
    expect(rows.map((row) => row.worker_id).sort()).toEqual(engines.map((engine) => engine.workerId).sort());
    const attempts = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.attempts');
    expect(attempts.rows[0]?.n).toBe(300);
  });
});
