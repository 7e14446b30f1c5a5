// stalled-worker, across processes: an engine killed with SIGKILL in the middle of a batch leaves its
// claimed deliveries leased. When the leases expire a second engine takes them back — recording the
// lost attempts as outcome_unknown, since those sends may or may not have happened — and finishes
// the work. Each delivery reaches the SMTP server (which never answered the killed engine) once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { type ChildEngine, spawnEngine } from './helpers/child-engine.ts';
import { queueDelivery, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let smtp: ScriptedSmtp;
let killed: ChildEngine | null = null;
let survivor: Engine | null = null;

beforeAll(async () => {
  db = await createTestDatabase('core-killed');
  smtp = await startScriptedSmtp();
});

afterAll(async () => {
  if (killed && !killed.exited.done) killed.process.kill('SIGKILL');
  await survivor?.stop();
  await smtp?.close();
  await db?.drop();
});

describe('stalled-worker: one engine killed with SIGKILL mid-batch', () => {
  it('a second engine finishes its work after the lease expires', async () => {
    const recipients = Array.from({ length: 20 }, (_, i) => unique(`killed-${i}`));
    for (const recipient of recipients) await queueDelivery(db.pool, { recipient });
    smtp.holdAll(true); // DATA is read and never answered: the first engine's sends hang in flight
    killed = await spawnEngine({
      MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
      MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
      MAIL_ATTEMPT_WORKER_CONCURRENCY: '4',
      MAIL_CLAIM_BATCH_SIZE: '4',
      MAIL_SMTP_TIMEOUT: '4s',
      // A whole send may take 4 s here, so that a 5 s lease still outlasts it by a tenth.
      MAIL_SMTP_SEND_DEADLINE: '4s',
      MAIL_LEASE_DURATION: '5s',
      MAIL_WATCHDOG_STALL_THRESHOLD: '60s',
    });
    const victim = killed;
    await waitFor('4 sends in flight at the SMTP server', () => recipients.filter((r) => smtp.seen.has(r)).length, (n) => n === 4);
    const { rows: leased } = await db.pool.query<{ id: string; locked_by: string }>("SELECT id, locked_by FROM mail.deliveries WHERE status = 'sending'");
    expect(leased).toHaveLength(4);
    victim.process.kill('SIGKILL');
    await waitFor('the engine process to die', () => victim.exited.done, Boolean);
    expect(victim.exited.signal).toBe('SIGKILL');

    smtp.holdAll(false);
    survivor = await startTestEngine(db.dsn, { MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}` });

    await waitFor(
      'all 20 sent',
      () => db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE status = 'sent'"),
      (result) => result.rows[0]?.n === 20,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(recipients.map((recipient) => smtp.accepted.get(recipient) ?? 0)).toEqual(recipients.map(() => 1));
    const { rows: lost } = await db.pool.query<{ delivery_id: string; attempt_number: number; worker_id: string }>(
      "SELECT delivery_id, attempt_number, worker_id FROM mail.attempts WHERE status = 'outcome_unknown' ORDER BY delivery_id",
    );
    expect(lost.map((row) => row.delivery_id).sort()).toEqual(leased.map((row) => row.id).sort());
    expect(new Set(lost.map((row) => row.worker_id))).toEqual(new Set([leased[0]?.locked_by]));
    const { rows: finished } = await db.pool.query(
      "SELECT count(*)::int AS n FROM mail.attempts WHERE status = 'sent' AND attempt_number = 2 AND delivery_id = ANY($1)",
      [leased.map((row) => row.id)],
    );
    expect(finished[0].n).toBe(4);
  });
});
