// The real process: `node apps/core/src/main.ts` boots in the runbook's order, answers the smoke
// request, runs in stub mode as the runbook describes (auth-session mail ends suppressed, counted,
// nothing leaves), and on SIGTERM stops its loops, releases its leases and exits 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { type ChildEngine, spawnEngine } from './helpers/child-engine.ts';
import { queueDelivery, unique, waitForStatus } from './helpers/engine.ts';

let db: TestDatabase;
let engine: ChildEngine;

beforeAll(async () => {
  db = await createTestDatabase('core-main');
  engine = await spawnEngine({ MAIL_POSTGRES_PRIMARY_DSN: db.dsn, MAIL_SMTP_MODE: 'stub', MAIL_HEARTBEAT_INTERVAL: '500ms' });
});

afterAll(async () => {
  if (!engine.exited.done) engine.process.kill('SIGKILL');
  await db?.drop();
});

describe('node apps/core/src/main.ts', () => {
  it('boots in the runbook order and answers the smoke request with 404', async () => {
    const order = ['schema up to date', 'template catalog parsed', 'HTTP listener open', 'loop started'];
    // Log lines may reach the pipe a moment after the port opens (a line the pipe could not take at
    // once waits in the process's stdout sink, packages/shared/src/logging/stdout-sink.ts): wait
    // for all four, then check their order.
    const positionsNow = () => order.map((message) => engine.logLines.findIndex((line) => line.includes(`"${message}"`)));
    const positions = await waitFor('the four boot lines', async () => positionsNow(), (seen) => seen.every((position) => position >= 0), { timeoutMs: 10_000, intervalMs: 50 });
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    const response = await fetch(`http://127.0.0.1:${engine.httpPort}/api/v1/internal/deliveries/does-not-exist`);
    expect(response.status).toBe(404);
    await waitFor('ready', () => fetch(`http://127.0.0.1:${engine.httpPort}/readyz`).then((r) => r.status), (s) => s === 200);
  });

  it('stub mode: a login code ends suppressed and counted; a notification passes the stub; nothing leaves', async () => {
    const auth = await queueDelivery(db.pool, {
      recipient: unique('stub-auth'),
      payload: { mode: 'template', templateId: 'login-code', locale: 'en', variables: { code: '1', expiresInMinutes: 5 } },
    });
    const note = await queueDelivery(db.pool, { recipient: unique('stub-note'), category: 'notification' });
    expect((await waitForStatus(db.pool, auth, 'suppressed'))?.last_error).toBe('stub mode: auth-session mail is not sent');
    await waitForStatus(db.pool, note, 'sent');
    const { rows } = await db.pool.query('SELECT smtp_text FROM mail.attempts WHERE delivery_id = $1', [note]);
    expect(rows[0].smtp_text).toContain('stub mode: accepted, not transmitted');
    const metrics = await (await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^mail_delivery_suppressed_total\{reason="stub_mode",app="core"\} 1$/m);
  });

  it('on SIGTERM stops in order and exits 0', async () => {
    engine.process.kill('SIGTERM');
    await waitFor('the engine process to exit', () => engine.exited.done, Boolean, { timeoutMs: 15_000 });
    expect(engine.exited).toMatchObject({ code: 0, signal: null });
    expect(engine.logLines.some((line) => line.includes('"core stopped"'))).toBe(true);
    const { rows } = await db.pool.query("SELECT DISTINCT state FROM mail.workers WHERE worker_id = $1", [engine.workerId]);
    expect(rows).toEqual([{ state: 'stopped' }]);
  });
});
