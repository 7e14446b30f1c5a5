// Many messages of MAIL_MTA_MAX_MESSAGE_SIZE (25 MiB) queued for a relay at once, the real engine
// process at 32 workers under a V8 heap limit, as an operator might run it, and a relay slow to
// answer the data, so that the messages sit in memory. Each attempt used to read its message whole,
// as hex text twice its size on V8's heap: the engine died of "JavaScript heap out of memory", was
// started again (as a container's restart policy does), took the same deliveries back once their
// leases ran out and died again — nothing was delivered. Now the bytes are read in slices
// (packages/shared load-payload.ts) within a byte budget for messages in flight, shared by the
// deliveries of one message (apps/core delivery/payload-holds.ts): the engine never dies, its peak
// RSS (the kernel's VmHWM, which no sampling can miss) stays under a bound, the bytes it holds
// never pass the budget (its gauge), and every message reaches the relay exactly once, intact.
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, metricSample, type TestDatabase, waitFor } from '../harness/index.ts';
import { type ChildEngine, spawnEngine } from './helpers/child-engine.ts';
import { type CountingSink, startCountingSink } from './helpers/counting-sink.ts';
import { unique } from './helpers/engine.ts';

const MiB = 1024 * 1024;
const MESSAGE_BYTES = 25 * MiB;
/** 4 messages to one recipient each, 2 to three: 10 deliveries of 25 MiB, all claimed at once.
 *  (PostgreSQL in a container on a loaded machine stores a 25 MiB message in up to a minute.) */
const SINGLE = 4;
const SHARED = 2;
const WORKERS = 32;
/** A V8 heap limit an operator might set for a small container; the engine's own heap is far below it. */
const HEAP_LIMIT_MIB = 192;
/** Room for two messages: the other attempts wait. */
const BUDGET_BYTES = 64 * MiB;
/** What the engine may reach: about 190 MiB idle, the budget, and what reading and sending cost on top. */
const PEAK_RSS_BOUND = 450 * MiB;

let db: TestDatabase;
let sink: CountingSink;
const engines: ChildEngine[] = [];
let supervising = true;
let supervisor: Promise<void> | null = null;

/** The kernel's record of the process's peak resident set; 0 once it is gone. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
}

/** The body every message shares: text lines, as PostgreSQL stores mail (compressed in TOAST). */
const LINE = `${'Minutes of the meeting, with the scans attached and quoted in full. '.padEnd(76, '-')}\r\n`;

/** One message of MESSAGE_BYTES as the edge stores it, with one relay delivery per recipient: its
 *  head is its own, its body made by PostgreSQL (a test that sent each 25 MiB over the wire spent
 *  most of its time doing that). Returns the message's SHA-256. */
async function storeMessage(recipients: string[]): Promise<string> {
  const head =
    `Received: from client.outside.test by mx.postern.test with ESMTP id ${randomUUID()}; ${new Date().toUTCString()}\r\n` +
    `From: <ann@outside.test>\r\nTo: ${recipients.map((r) => `<${r}>`).join(', ')}\r\nSubject: the minutes\r\n` +
    `Message-ID: <${randomUUID()}@outside.test>\r\n\r\n`;
  const lines = Math.floor((MESSAGE_BYTES - head.length) / LINE.length);
  await db.pool.query(
    `WITH m AS (INSERT INTO mail.messages (envelope_from, envelope_to, size_bytes) VALUES ('ann@outside.test', $1::text[], $2) RETURNING id),
          p AS (INSERT INTO mail.message_payloads (message_id, raw) SELECT id, convert_to($3 || repeat($4, $5), 'UTF8') FROM m)
     INSERT INTO mail.deliveries (source, payload_mode, message_id, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
     SELECT 'smtp', 'relay', m.id, t.recipient, 'ann@outside.test', '<' || gen_random_uuid() || '@mx.postern.test>', 'queued', now()
       FROM m, unnest($1::text[]) AS t(recipient)`,
    [recipients, head.length + lines * LINE.length, head, LINE, lines],
  );
  return createHash('sha256').update(head).update(LINE.repeat(lines)).digest('hex');
}

beforeAll(async () => {
  db = await createTestDatabase('core-payload-memory');
  sink = await startCountingSink({ answerDataAfterMs: 1_000 });
});

afterAll(async () => {
  supervising = false;
  for (const engine of engines) if (!engine.exited.done) engine.process.kill('SIGKILL');
  await supervisor;
  await sink?.close();
  await db?.drop();
});

describe('large messages in flight', () => {
  it('32 workers on 10 deliveries of 25 MiB under a 192 MiB heap limit: the engine stays within its bound, never dies, and the relay gets each message once, intact', async () => {
    const expected = new Map<string, string>();
    const messages: string[][] = [
      ...Array.from({ length: SINGLE }, (_, i) => [unique(`large-${i}`)]),
      ...Array.from({ length: SHARED }, (_, i) => [0, 1, 2].map((r) => unique(`shared-${i}-${r}`))),
    ];
    for (const recipients of messages) {
      const digest = await storeMessage(recipients);
      for (const recipient of recipients) expected.set(recipient, digest);
    }

    // As a container with a restart policy runs it: an engine that dies is started again.
    const env = {
      MAIL_POSTGRES_PRIMARY_DSN: db.dsn,
      MAIL_SMTP_ADDR: `127.0.0.1:${sink.port}`,
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(WORKERS),
      MAIL_CLAIM_BATCH_SIZE: String(WORKERS),
      MAIL_PAYLOAD_MEMORY_BUDGET: `${BUDGET_BYTES / MiB}MiB`,
      NODE_OPTIONS: `--max-old-space-size=${HEAP_LIMIT_MIB}`,
      // A dead engine's leases run out and are retried within a minute, so a crash loop shows.
      MAIL_SMTP_TIMEOUT: '20s',
      MAIL_SMTP_SEND_DEADLINE: '40s',
      MAIL_LEASE_DURATION: '45s',
      MAIL_RETRY_LADDER: '1s,1s,1s,1s,1s,1s,1s,1s',
      MAIL_HEARTBEAT_INTERVAL: '1s',
    };
    engines.push(await spawnEngine(env));
    supervisor = (async () => {
      while (supervising) {
        const current = engines.at(-1) as ChildEngine;
        await waitFor('the engine to exit', () => current.exited.done || !supervising, Boolean, { timeoutMs: 3_600_000, intervalMs: 100 });
        if (supervising) engines.push(await spawnEngine(env));
      }
    })();

    // Every second: the engine's peak RSS so far, and what its gauges say it holds.
    let peak = 0;
    let heldMax = 0;
    let waitingMax = 0;
    const watch = setInterval(async () => {
      const engine = engines.at(-1) as ChildEngine;
      peak = Math.max(peak, await peakRss(engine.process.pid as number));
      const text = await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`).then((answer) => answer.text(), () => '');
      heldMax = Math.max(heldMax, metricSample(text, 'mail_payload_bytes_held') || 0);
      waitingMax = Math.max(waitingMax, metricSample(text, 'mail_payload_reads_waiting') || 0);
    }, 250);
    try {
      // Done when every delivery has ended — or when the engine died twice: a crash loop.
      const ended = await waitFor(
        'every delivery ended, or a crash loop',
        async () => {
          const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.deliveries WHERE status IN ('sent', 'failed', 'dead_letter', 'suppressed')");
          return { ended: rows[0]?.n ?? 0, deaths: engines.filter((engine) => engine.exited.done).length };
        },
        (state) => state.ended === expected.size || state.deaths >= 2,
        { timeoutMs: 600_000, intervalMs: 500 },
      );
      const engine = engines.at(-1) as ChildEngine;
      peak = Math.max(peak, await peakRss(engine.process.pid as number));
      const deaths = engines.filter((e) => e.exited.done).map((e) => `${e.exited.signal ?? `exit ${e.exited.code}`}${e.logLines.some((line) => line.includes('heap out of memory')) ? ' (heap out of memory)' : ''}`);
      console.log(`engine peak RSS ${Math.round(peak / MiB)} MiB, payload bytes held at most ${Math.round(heldMax / MiB)} MiB, reads waiting at most ${waitingMax}; deaths: ${deaths.join(', ') || 'none'}; ended ${ended.ended} of ${expected.size}`);
      expect(deaths).toEqual([]);
      expect(ended.ended).toBe(expected.size);
    } finally {
      clearInterval(watch);
    }

    // The account: N in, N out, each once at the relay, with its bytes.
    const { rows: statuses } = await db.pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries GROUP BY status');
    expect(statuses).toEqual([{ status: 'sent', n: expected.size }]);
    const { rows: attempts } = await db.pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.attempts GROUP BY status');
    expect(attempts).toEqual([{ status: 'sent', n: expected.size }]);
    for (const [recipient, digest] of expected) {
      expect(sink.accepted.get(recipient), recipient).toBe(1);
      expect(sink.digests.get(recipient), recipient).toBe(digest);
    }
    expect([...sink.accepted.values()].reduce((sum, n) => sum + n, 0)).toBe(expected.size);

    expect(peak).toBeLessThan(PEAK_RSS_BOUND);
    expect(heldMax).toBeLessThanOrEqual(BUDGET_BYTES);
    // 32 workers, room for 2 messages: reads did wait for the budget.
    expect(waitingMax).toBeGreaterThan(0);
  }, 900_000);
});
