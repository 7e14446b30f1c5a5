// Redis restarted without persistence: the stream and the consumer group are gone (NOGROUP). The
// engine recreates the group and intake resumes; it never exits. A Redis of this file's own, behind
// a TCP proxy so its address survives the restart.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { createTestDatabase, startTcpProxy, type TcpProxy, type TestDatabase, waitFor } from '../harness/index.ts';
import { metricsText, metricValue, startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

const run = promisify(execFile);
let db: TestDatabase;
let container: StartedRedisContainer;
let proxy: TcpProxy;
let redis: Redis;
let engine: Engine;
let smtp: ScriptedSmtp;

async function mappedPort(id: string): Promise<number> {
  const { stdout } = await run('docker', ['port', id, '6379/tcp']);
  return Number(/:(\d+)\s*$/m.exec(stdout.trim().split('\n')[0] ?? '')?.[1]);
}

function command(recipient: string): string[] {
  return ['schema_version', '2', 'command', JSON.stringify({ source: 'billing', idempotencyKey: randomUUID(), to: recipient, payload: { mode: 'rendered', subject: 's', text: 't' } })];
}

beforeAll(async () => {
  db = await createTestDatabase('core-redis-restart');
  // No RDB, no AOF: a restart comes back empty.
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).withCommand(['redis-server', '--save', '', '--appendonly', 'no']).start();
  proxy = await startTcpProxy(container.getHost(), container.getPort());
  redis = new Redis({ host: proxy.host, port: proxy.port, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  redis.on('error', () => {});
  smtp = await startScriptedSmtp();
  engine = await startTestEngine(db.dsn, { MAIL_REDIS_MASTER_ADDR: `${proxy.host}:${proxy.port}`, MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}` });
});

afterAll(async () => {
  await engine?.stop();
  redis?.disconnect();
  await proxy?.close();
  await container?.stop({ remove: true, removeVolumes: true });
  await smtp?.close();
  await db?.drop();
});

describe('Redis restarted empty', () => {
  it('the consumer group is recreated and intake resumes', async () => {
    const before = unique('before-restart');
    await redis.xadd(COMMAND_STREAM, '*', ...command(before));
    await waitFor('the first command delivered', () => smtp.accepted.get(before) ?? 0, (n) => n === 1);

    await run('docker', ['stop', '--time', '2', container.getId()]);
    proxy.cutConnections();
    await run('docker', ['start', container.getId()]);
    proxy.retarget(container.getHost(), await mappedPort(container.getId()));
    await waitFor('Redis to answer again, empty', () => redis.dbsize(), (n) => n === 0, { timeoutMs: 30_000 });

    const after = unique('after-restart');
    await waitFor('XADD to work again', () => redis.xadd(COMMAND_STREAM, '*', ...command(after)), Boolean, { timeoutMs: 30_000, intervalMs: 250 });
    await waitFor('the command after the restart delivered', () => smtp.accepted.get(after) ?? 0, (n) => n === 1, { timeoutMs: 60_000, intervalMs: 200 });
    const groups = (await redis.xinfo('GROUPS', COMMAND_STREAM)) as unknown[][];
    expect(groups).toHaveLength(1);
    expect(metricValue(await metricsText(engine), 'mail_stream_commands_accepted_total{schema_version="2",outcome="created"}')).toBe(2);
    expect((await fetch(`http://${engine.http?.host}:${engine.http?.port}/readyz`)).status).toBe(200);
  });
});
