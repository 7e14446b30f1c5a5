// MAIL_REDIS_MASTER_ADDR=sentinel://…/mymaster: the engine asks Redis Sentinel for the master, and
// after a failover finds the new one by itself. Real containers on a network of their own: a master,
// a replica, one Sentinel (quorum 1); the failover is Sentinel's own (SENTINEL FAILOVER), and the
// command written to the new master after it must be delivered like the one before.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { GenericContainer, Network, type StartedNetwork, type StartedTestContainer, Wait } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEngine, unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

const MASTER_NAME = 'postern';
let db: TestDatabase;
let network: StartedNetwork;
let master: StartedTestContainer;
let replica: StartedTestContainer;
let sentinel: StartedTestContainer;
let engine: Engine;
let smtp: ScriptedSmtp;

function redisNode(name: string, args: string[] = []): GenericContainer {
  return new GenericContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withNetwork(network)
    .withNetworkAliases(name)
    .withCommand(['redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...args])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/));
}

/** The master as the Sentinel names it now: "ip:port". */
async function currentMaster(): Promise<string> {
  const client = new Redis({ host: sentinel.getHost(), port: sentinel.getMappedPort(26379), lazyConnect: true });
  try {
    await client.connect();
    const [ip, port] = (await client.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as [string, string];
    return `${ip}:${port}`;
  } finally {
    client.disconnect();
  }
}

async function writeCommand(recipient: string): Promise<void> {
  const [host, port] = (await currentMaster()).split(':');
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
  network = await new Network().start();
  master = await redisNode('redis-a').start();
  const masterIp = master.getIpAddress(network.getName());
  replica = await redisNode('redis-b', ['--replicaof', masterIp, '6379']).start();
  const config = [
    'port 26379',
    `sentinel monitor ${MASTER_NAME} ${masterIp} 6379 1`,
    `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
    `sentinel failover-timeout ${MASTER_NAME} 5000`,
    '',
  ].join('\n');
  sentinel = await new GenericContainer(images.redis)
    .withLabels({ 'postern.e2e': RUN_ID })
    .withNetwork(network)
    .withCopyContentToContainer([{ content: config, target: '/tmp/sentinel.conf', mode: 0o666 }])
    .withCommand(['redis-server', '/tmp/sentinel.conf', '--sentinel'])
    .withExposedPorts(26379)
    .withWaitStrategy(Wait.forLogMessage(/\+monitor master/))
    .start();
  smtp = await startScriptedSmtp();
  engine = await startTestEngine(db.dsn, {
    MAIL_REDIS_MASTER_ADDR: `sentinel://${sentinel.getHost()}:${sentinel.getMappedPort(26379)}/${MASTER_NAME}`,
    MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
  });
});

afterAll(async () => {
  await engine?.stop();
  await smtp?.close();
  for (const container of [sentinel, replica, master]) await container?.stop({ remove: true, removeVolumes: true });
  await network?.stop();
  await db?.drop();
});

describe('Redis behind Sentinel', () => {
  it('reads commands from the master Sentinel names, and from the new one after a failover', async () => {
    const before = unique('before-failover');
    const firstMaster = await currentMaster();
    await writeCommand(before);
    await waitFor('the command before the failover delivered', () => smtp.accepted.get(before) ?? 0, (n) => n === 1, { timeoutMs: 30_000 });

    const probe = new Redis({ host: sentinel.getHost(), port: sentinel.getMappedPort(26379) });
    await probe.call('SENTINEL', 'failover', MASTER_NAME);
    probe.disconnect();
    await waitFor('Sentinel to name another master', currentMaster, (now) => now !== firstMaster, { timeoutMs: 30_000, intervalMs: 250 });

    const after = unique('after-failover');
    // The new master may still be finishing its promotion: a refused write is retried.
    await waitFor('a write to the new master', () => writeCommand(after).then(() => true, () => false), Boolean, { timeoutMs: 30_000, intervalMs: 250 });
    await waitFor('the command after the failover delivered', () => smtp.accepted.get(after) ?? 0, (n) => n === 1, { timeoutMs: 60_000, intervalMs: 200 });
    expect(smtp.accepted.get(before)).toBe(1);
    expect((await fetch(`http://${engine.http?.host}:${engine.http?.port}/readyz`)).status).toBe(200);
  });
});
