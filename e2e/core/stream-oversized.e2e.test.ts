// A buggy producer's oversized stream entries must not cost an engine what they weigh. Redis takes
// fields of up to 512 MiB; a command over MAX_COMMAND_BYTES is refused as too_large anyway, but the
// engine read 50 entries at a time whole (XREADGROUP / XAUTOCLAIM ... COUNT 50) before refusing
// them: 50 entries of 10 MB took it from 179 MiB to 934 MiB, and under a container's memory limit it
// was OOM-killed, restarted, XAUTOCLAIMed the same entries and was killed again, intake stopped.
// Here the real engine process (its peak RSS is the kernel's VmHWM, which no sampling can miss)
// gets 30 entries of 8 MB, half of them new and half left pending by a consumer that died, among
// valid commands: each oversized one is quarantined as too_large with its size and what it was,
// the valid ones are delivered, and the engine's peak grows by a fraction of what the entries weigh.
// A Redis of this file's own: the shared one's stream is read by stream-intake.e2e.test.ts.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { RedisContainer, type StartedRedisContainer } from '@testcontainers/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_STREAM } from '../../apps/core/src/intake/consume-stream.ts';
import { RUN_ID } from '../harness/containers.ts';
import { images } from '../harness/images.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { type ChildEngine, spawnEngine } from './helpers/child-engine.ts';
import { unique } from './helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from './helpers/smtp-servers.ts';

const GROUP = 'postern-core';
const MiB = 1024 * 1024;
const OVERSIZED_BYTES = 8 * MiB;

let db: TestDatabase;
let container: StartedRedisContainer;
let redis: Redis;
let smtp: ScriptedSmtp;
let engine: ChildEngine;

/** The kernel's record of the process's peak resident set. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (!kib) throw new Error(`no VmHWM for ${pid}`);
  return Number(kib) * 1024;
}

function v1Rendered(recipient: string): Record<string, string> {
  return { schema_version: '1', source: 'billing', idempotency_key: randomUUID(), recipient, payload_mode: 'rendered', subject: 'Receipt', text: 'Thank you.' };
}

/** What Redis counts of an entry: its field names and values, in bytes. */
function entryBytes(fields: Record<string, string | Buffer>): number {
  return Object.entries(fields).reduce((sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value), 0);
}

/** The i-th oversized entry: v1 with an 8 MB text, or v2 whose `command` JSON is 8 MB. */
function oversized(i: number, body: Buffer): { fields: Record<string, string | Buffer>; schemaVersion: string; source: string | null } {
  if (i % 2 === 0) {
    const fields = { ...v1Rendered(unique(`huge-v1-${i}`)), source: 'buggy-producer', text: body };
    return { fields, schemaVersion: '1', source: 'buggy-producer' };
  }
  const head = JSON.stringify({ source: 'buggy-producer', idempotencyKey: randomUUID(), to: unique(`huge-v2-${i}`), payload: { mode: 'rendered', subject: 's', text: '' } });
  // The text is the body, spliced in as JSON text: the whole field is valid JSON of OVERSIZED_BYTES and more.
  const command = Buffer.concat([Buffer.from(head.slice(0, -3)), body, Buffer.from('"}}')]);
  return { fields: { schema_version: '2', command }, schemaVersion: '2', source: null };
}

beforeAll(async () => {
  db = await createTestDatabase('core-stream-oversized');
  container = await new RedisContainer(images.redis).withLabels({ 'postern.e2e': RUN_ID }).start();
  redis = new Redis({ host: container.getHost(), port: container.getPort(), maxRetriesPerRequest: 1 });
  smtp = await startScriptedSmtp();
  await redis.xgroup('CREATE', COMMAND_STREAM, GROUP, '0', 'MKSTREAM');
  engine = await spawnEngine({
    MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
    MAIL_REDIS_MASTER_ADDR: `${container.getHost()}:${container.getPort()}`,
    MAIL_REDIS_CONSUMER_GROUP: GROUP,
    MAIL_SMTP_ADDR: `127.0.0.1:${smtp.port}`,
    MAIL_STREAM_RECLAIM_IDLE: '1s',
    MAIL_HEARTBEAT_INTERVAL: '500ms',
  });
});

afterAll(async () => {
  if (engine && !engine.exited.done) engine.process.kill('SIGKILL');
  redis?.disconnect();
  await container?.stop({ remove: true, removeVolumes: true });
  await smtp?.close();
  await db?.drop();
});

describe('oversized stream entries', () => {
  it('30 entries of 8 MB, new and left pending by a dead consumer, are quarantined as too_large with their size without the engine reading them; the valid commands around them are delivered', async () => {
    const pid = engine.process.pid as number;
    // Warm: the engine has read, accepted and delivered once before its peak is taken.
    const warm = unique('warm');
    await redis.xadd(COMMAND_STREAM, '*', ...Object.entries(v1Rendered(warm)).flat());
    await waitFor('the warm-up command delivered', () => smtp.accepted.get(warm) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
    const peakBefore = await peakRss(pid);

    // Stopped while the entries are added, so that they wait for it together, as after an outage.
    const body = Buffer.alloc(OVERSIZED_BYTES, 'x');
    const huge: Array<{ id: string; bytes: number; schemaVersion: string; source: string | null }> = [];
    const valid: string[] = [];
    async function add(from: number, to: number): Promise<void> {
      for (let i = from; i < to; i++) {
        const { fields, schemaVersion, source } = oversized(i, body);
        const id = (await redis.xadd(COMMAND_STREAM, '*', ...Object.entries(fields).flat())) as string;
        huge.push({ id, bytes: entryBytes(fields), schemaVersion, source });
        if (i % 5 === 4) {
          const recipient = unique(`valid-${i}`);
          await redis.xadd(COMMAND_STREAM, '*', ...Object.entries(v1Rendered(recipient)).flat());
          valid.push(recipient);
        }
      }
    }
    engine.process.kill('SIGSTOP');
    try {
      await add(0, 15);
      // A consumer that read them and died: they are the engine's to take over (XAUTOCLAIM). Read
      // in Redis, so that this test process does not hold them either.
      await redis.eval(
        "redis.call('XREADGROUP', 'GROUP', ARGV[1], 'dead-consumer', 'COUNT', 1000, 'STREAMS', KEYS[1], '>') return 1",
        1, COMMAND_STREAM, GROUP,
      );
      await add(15, 30);
      // Small in bytes, but an object per field in the engine's memory: refused unread too.
      const manyFields = ['schema_version', '1', 'source', 'many-fields', ...Array.from({ length: 300 }, (_, i) => [`extra_${i}`, 'x']).flat()];
      const id = (await redis.xadd(COMMAND_STREAM, '*', ...manyFields)) as string;
      huge.push({ id, bytes: manyFields.reduce((sum, text) => sum + Buffer.byteLength(text), 0), schemaVersion: '1', source: 'many-fields' });
    } finally {
      engine.process.kill('SIGCONT');
    }

    const ids = huge.map((entry) => entry.id);
    const { rows } = await waitFor(
      'every oversized entry quarantined',
      () => db.pool.query('SELECT stream_entry_id, failure_code, failure_detail, schema_version, source, raw FROM mail.malformed_commands WHERE stream_entry_id = ANY($1)', [ids]),
      (result) => result.rows.length === huge.length,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    for (const recipient of valid) {
      await waitFor(`the valid command to ${recipient} delivered`, () => smtp.accepted.get(recipient) ?? 0, (n) => n === 1, { timeoutMs: 20_000, intervalMs: 100 });
    }
    await waitFor('every entry acknowledged', async () => ((await redis.xpending(COMMAND_STREAM, GROUP)) as [number])[0], (n) => n === 0, { timeoutMs: 10_000 });

    // 30 entries of 8 MB: read whole (before stream-read.ts) they grew this peak by 318 MiB.
    const growth = (await peakRss(pid)) - peakBefore;
    console.log(`engine peak RSS ${Math.round(peakBefore / MiB)} MiB before, grew by ${Math.round(growth / MiB)} MiB`);
    expect(engine.exited.done).toBe(false);
    expect(growth).toBeLessThan(40 * MiB);

    const byId = new Map(rows.map((row) => [row.stream_entry_id as string, row]));
    for (const entry of huge) {
      const row = byId.get(entry.id);
      if (!row) throw new Error(`no quarantine row for ${entry.id}`);
      expect(row.failure_code).toBe('too_large');
      const why = entry.source === 'many-fields' ? 'in 302 fields, more than 256 fields' : 'in \\d+ fields, larger than 262144 bytes';
      expect(row.failure_detail).toMatch(new RegExp(`^command of ${entry.bytes} bytes ${why}: not read by the engine`));
      expect(row.schema_version).toBe(entry.schemaVersion);
      expect(row.source).toBe(entry.source);
      expect((row.raw as string).length).toBeLessThan(64 * 1024);
    }
    // And it waited for new entries on Redis's word, not by polling (stream-doorbell.ts).
    expect(engine.logLines.some((line) => line.includes('waiting for new stream entries by Redis client tracking'))).toBe(true);
  });
});
