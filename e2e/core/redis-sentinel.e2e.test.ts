// MAIL_REDIS_MASTER_ADDR=sentinel://…/mymaster: the engine asks Redis Sentinel for the master, and
// after a failover finds the new one by itself. Real containers (e2e/faults/helpers/sentinel-redis.ts) on a network of their own: a master,
// a replica, one Sentinel (quorum 1); the failover is Sentinel's own (SENTINEL FAILOVER), and the
// command written to the new master after it must be delivered like the one before.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { type SentinelRedis, startSentinelRedis } from '../faults/helpers/sentinel-redis.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

let db: TestDatabase;
let redis: SentinelRedis;
let engine: Engine;
let smtp: ScriptedSmtp;

/** One XADD straight to the master the Sentinel names now. */
async function writeCommand(recipient: string): Promise<void> {
  const [host, port] = (await redis.currentMaster()).split(':');
  const client = new Redis({ host, port: Number(port), maxRetriesPerRequest: 1 });
  try {
    const command = { source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 's', text: 't' } };
    await client.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', JSON.stringify(command));
  } finally {
    client.disconnect();
  }
}

beforeAll(async () => {
  db = await createTestDatabase('core-redis-sentinel');
  redis = await startSentinelRedis();
  smtp = await startScriptedSmtp();
  engine = await startTestEngine(db.dsn, { MAIL_REDIS_MASTER_ADDR: redis.addr, MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}` });
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  await redis?.close();
  await db?.drop();
});

describe('Redis behind Sentinel', () => {
  it('reads commands from the master Sentinel names, and from the new one after a failover', async () => {
    const before = unique('before-failover');
    await writeCommand(before);
    await waitFor('the command before the failover delivered', () => smtp.accepted.get(before) ?? 0, (n) => n === 1, { timeoutMs: 30_000 });

    await redis.failover();

    const after = unique('after-failover');
    // The new master may still be finishing its promotion: a refused write is retried.
    await waitFor('a write to the new master', () => writeCommand(after).then(() => true, () => false), Boolean, { timeoutMs: 30_000, intervalMs: 250 });
    await waitFor('the command after the failover delivered', () => smtp.accepted.get(after) ?? 0, (n) => n === 1, { timeoutMs: 60_000, intervalMs: 200 });
    expect(smtp.accepted.get(before)).toBe(1);
    expect((await fetch(`http://${engine.http?.host}:${engine.http?.port}/readyz`)).status).toBe(200);
  });
});
