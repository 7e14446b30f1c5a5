// Fault matrix, PostgreSQL's disk full: the commonest mail-server incident there is. The server's
// data directory and its WAL are on small tmpfs mounts of their own (helpers/disk-full-postgres.ts)
// and a filler file really fills one of them, from inside the container, while mail comes in
// through the edge from Python's smtplib (a sending MTA we did not write), commands through the
// stream and through the API's sendEmail, and the engine delivers to the sink:
//   - the data mount full: PostgreSQL stays up and answers reads, and every write that needs a new
//     page fails with 53100 `could not extend file ...: No space left on device`; once during the
//     intake, once during delivery;
//   - the WAL mount full: the next WAL segment cannot be created, the server PANICs, and its crash
//     recovery PANICs again for as long as there is no room: it is down until space is freed.
// For 30 s, then the filler is removed. The edge must never answer 250 before the commit and never
// 5xx: a full disk is `452 4.3.1` (RFC 3463 X.3.1, mail system full); the engine waits (no dead
// letter, nothing failed for good, nothing quarantined, nothing sent twice because an outcome could
// not be recorded); /readyz names the full disk; and once space is freed everything resumes by
// itself, without a restart. Each cell ends with its account.
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { mintToken, startTestApi } from '../api/helpers/api.ts';
import { startTestEngine } from '../core/helpers/engine.ts';
import { type FaultSink, type SinkBehaviour, startFaultSink } from '../harness/fault-sink.ts';
import { readyzOf, readyzWhen, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { type ApiSendRecord, sendAllThroughApi } from './helpers/api-producer.ts';
import { cellEngineEnv, cellSize, EDGE_ENV, expectEverythingDelivered, type FaultCell, openCell, stopCellProcesses, total } from './helpers/cell.ts';
import { type DiskFullPostgres, startDiskFullPostgres } from './helpers/disk-full-postgres.ts';
import { engineNote } from './helpers/engine-facts.ts';
import { type FaultRedis, startFaultRedis } from './helpers/fault-redis.ts';
import { faultMessage } from './helpers/smtp-sender.ts';
import { type SmtplibRecord, sendWithSmtplib } from './helpers/smtplib-sender.ts';
import { FAULT_SOURCE, faultCommand, produceAll, type XaddRecord } from './helpers/stream-producer.ts';

const FULL_MS = 30_000;
const DEADLINE_MS = 240_000;
const DISK_FULL_REPLY = '452 4.3.1 Insufficient system storage: the message store is full, try again later';
const DISK_FULL_SEND_EMAIL = "PostgreSQL's disk is full: send the same request again later (with the same idempotencyKey a retry never makes a second delivery)";
const DISK_FULL_READYZ = /PostgreSQL's disk is full: .*No space left on device \(SQLSTATE 53100\)/;

let disk: DiskFullPostgres;
let redis: FaultRedis;
let pool: pg.Pool;
let sink: FaultSink | null = null;
let edge: Edge | null = null;
let engine: Engine | null = null;
let api: Api | null = null;

beforeAll(async () => {
  const [started, redisStarted] = await Promise.allSettled([startDiskFullPostgres(), startFaultRedis()]);
  if (started.status === 'rejected' || redisStarted.status === 'rejected') {
    // The one that did start is stopped: afterAll knows only what both gave.
    if (started.status === 'fulfilled') await started.value.close();
    if (redisStarted.status === 'fulfilled') await redisStarted.value.close();
    throw started.status === 'rejected' ? started.reason : (redisStarted as PromiseRejectedResult).reason;
  }
  [disk, redis] = [started.value, redisStarted.value];
  pool = new pg.Pool({ connectionString: disk.dsn, max: 3 });
  // Errors while the server is down are the experiment, not the test's.
  pool.on('error', () => {});
}, 400_000);

afterEach(async () => {
  // A failed cell leaves no filler behind: first, so the processes can finish what they hold.
  await Promise.all([disk.free('data'), disk.free('wal')]);
  await api?.stop();
  await stopCellProcesses({ engines: [engine], edge, sink });
  [api, engine, edge, sink] = [null, null, null, null];
}, 120_000);

/**
 * Expects the process's /readyz to turn 503 naming the full disk within 30 s (a check cut off by
 * the machine's load says only "no answer", so it is polled). Softly: the cell goes on to its
 * account either way, so a run that fails here still reports what the fault did.
 */
async function expectReadyzNamesTheDisk(name: string, process: { http: { host: string; port: number } | null }): Promise<void> {
  const seen = await waitFor('/readyz 503 naming the full disk', () => readyzOf(process), (answer) => answer.status === 503 && DISK_FULL_READYZ.test(answer.body), {
    timeoutMs: 30_000,
    intervalMs: 250,
  }).then(
    () => 'named the disk',
    (error: Error) => error.message,
  );
  expect.soft(seen, `${name} /readyz`).toBe('named the disk');
}

afterAll(async () => {
  await pool?.end();
  await redis?.close();
  await disk?.close();
});

interface DiskCell {
  cell: FaultCell;
  edge: Edge;
  api: Api;
  /** A sendEmail token of the cells' producer (the stream's commands' source). */
  token: string;
}

async function openDiskCell(name: string, behaviour?: SinkBehaviour): Promise<DiskCell> {
  sink = await startFaultSink(behaviour);
  const cell = await openCell({ cell: name, n: cellSize(60), dsn: disk.dsn, pool, redis, sink });
  // Lookups get room on a loaded machine: their 451 would keep the messages from ever reaching DATA.
  edge = await startTestEdge(cell.dsn, { ...EDGE_ENV, MAIL_MTA_LOOKUP_TIMEOUT: '10s' });
  api = await startTestApi(cell.dsn, { MAIL_POSTGRES_CONNECT_TIMEOUT: '2s' });
  const token = await mintToken(pool, ['send'], `sender-${name}`, FAULT_SOURCE);
  return { cell, edge, api, token };
}

interface DiskTraffic {
  /** Inputs handed over so far, all channels. */
  progress(): number;
  /** Messages the edge answered 250 so far. */
  smtpAccepted(): number;
  done: Promise<{ sent: SmtplibRecord[]; produced: XaddRecord[]; api: ApiSendRecord[] }>;
}

/** N messages through smtplib, N stream commands and N sendEmail calls, together, each a flow. */
function startDiskTraffic(open: DiskCell): DiskTraffic {
  const { cell } = open;
  let progress = 0;
  let smtp = 0;
  const count = () => {
    progress += 1;
  };
  const messages = Array.from({ length: cell.n }, (_, i) => faultMessage(cell.cell, i, cell.rcpt));
  const commands = Array.from({ length: cell.n }, (_, i) => faultCommand(cell.cell, i));
  const sent = sendWithSmtplib(messages, { port: open.edge.smtp.port, concurrency: 2, paceMs: 300, deadlineMs: DEADLINE_MS, onAccepted: () => {
    smtp += 1;
    count();
  } });
  const streamed = produceAll(redis.client, cell.cell, commands, { deadlineMs: DEADLINE_MS, paceMs: 300, onAcknowledged: count });
  const called = sendAllThroughApi(open.api.url, open.token, cell.cell, cell.n, { deadlineMs: DEADLINE_MS, paceMs: 300, onAccepted: count });
  return {
    progress: () => progress,
    smtpAccepted: () => smtp,
    done: Promise.all([sent, streamed, called]).then(([s, p, a]) => ({ sent: s, produced: [...p, ...a], api: a })),
  };
}

/** A cell with its engine running and its traffic going, a fifth of it in: the fault falls into the intake. */
async function intakeUnderWay(name: string): Promise<{ open: DiskCell; running: Engine; traffic: DiskTraffic }> {
  const open = await openDiskCell(name);
  const running = await startTestEngine(open.cell.dsn, cellEngineEnv(open.cell));
  engine = running;
  const traffic = startDiskTraffic(open);
  // The edge's share too: a fault that falls on an edge not yet accepting says nothing about the edge.
  await waitFor('a fifth of the messages accepted at the edge', traffic.smtpAccepted, (count) => count >= open.cell.n / 5, { timeoutMs: 120_000 });
  await waitFor('a fifth of the intake handed over', traffic.progress, (count) => count >= (3 * open.cell.n) / 5, { timeoutMs: 90_000 });
  return { open, running, traffic };
}

async function quarantined(): Promise<Array<{ failure_code: string; failure_detail: string }>> {
  const { rows } = await pool.query<{ failure_code: string; failure_detail: string }>('SELECT failure_code, failure_detail FROM mail.malformed_commands ORDER BY id');
  return rows;
}

/** What the intake's senders and callers were told while it lasted, for the notes and the asserts. */
function heard(inputs: Awaited<DiskTraffic['done']>): { smtp: string[]; api: string[] } {
  const distinct = (replies: string[]) => [...new Set(replies)].sort();
  return { smtp: distinct(inputs.sent.flatMap((record) => record.replies)), api: distinct(inputs.api.flatMap((record) => record.refusals)) };
}

async function accountOf(cell: FaultCell, inputs: Awaited<DiskTraffic['done']>, faultEndedAt: number, note: string) {
  const told = heard(inputs);
  console.log(`[fault-matrix] ${cell.cell}: smtplib heard ${JSON.stringify(told.smtp)}; sendEmail callers heard ${JSON.stringify(told.api)}`);
  const account = await expectEverythingDelivered(cell, inputs, {
    faultEndedAt,
    settleMs: 120_000,
    duplicateBound: 'zero',
    annotate: engineNote(engine ? [engine] : []),
    note,
  });
  expect(await quarantined()).toEqual([]);
  // Never a permanent refusal: nothing the fault did is the message's fault. And never an
  // "Unexpected error." for a caller of sendEmail, which reads as a bug and says nothing of retrying.
  expect.soft(told.smtp.filter((reply) => /^5/.test(reply))).toEqual([]);
  expect.soft(told.api.filter((answer) => /INTERNAL_SERVER_ERROR|Unexpected error/.test(answer))).toEqual([]);
  return { account, told };
}

describe('fault matrix: PostgreSQL disk full', () => {
  it('data directory full during intake: 452 4.3.1, /readyz names the disk, everything accepted is delivered once', async () => {
    const { open, running, traffic } = await intakeUnderWay('pg-disk-full-intake');
    const filled = await disk.fill('data');
    const fullAt = Date.now();
    // Every process says why it cannot do its work, naming the disk.
    await Promise.all([expectReadyzNamesTheDisk('edge', open.edge), expectReadyzNamesTheDisk('engine', running), expectReadyzNamesTheDisk('api', open.api)]);
    await delay(Math.max(0, FULL_MS - (Date.now() - fullAt))); // the full disk itself, not a wait for a state
    await disk.free('data');
    const faultEndedAt = Date.now();
    const inputs = await traffic.done;
    const { told } = await accountOf(open.cell, inputs, faultEndedAt, `data mount filled (${Math.round(filled / 1e6)} MB of filler) for 30 s after a fifth was in`);
    for (const process of [open.edge, running, open.api]) await readyzWhen(process, 200);
    // The fault really met the intake, and the edge and the API said what it was.
    expect.soft(told.smtp).toContain(DISK_FULL_REPLY);
    // sendEmail's callers are told to retry: the full disk named, or, where the token's check needed a
    // new connection the full disk refused (FATAL: could not write init file), that it could not be
    // checked. Never an unexpected error (accountOf).
    expect.soft(told.api.length).toBeGreaterThan(0);
    expect.soft(told.api.filter((answer) => !answer.startsWith('HTTP 503: SERVICE_UNAVAILABLE '))).toEqual([]);
    expect.soft(told.api.some((answer) => answer.includes(DISK_FULL_SEND_EMAIL) || answer.includes('the token could not be checked'))).toBe(true);
    expect(inputs.sent.some((record) => record.tries > 1)).toBe(true);
  }, 400_000);

  it('data directory full during delivery: every outcome recorded once space is back, nothing sent twice', async () => {
    // 50 ms per reply: a send takes a few hundred ms, so delivery is under way when the disk fills.
    const open = await openDiskCell('pg-disk-full-delivery', { kind: 'delay-every-reply', delayMs: 50 });
    const traffic = startDiskTraffic(open);
    const inputs = await traffic.done;
    // The engine starts once everything is in, so the fault falls into delivery.
    engine = await startTestEngine(
      open.cell.dsn,
      cellEngineEnv(open.cell, { MAIL_POSTGRES_STATEMENT_TIMEOUT: '2s', MAIL_LEASE_DURATION: '20s', MAIL_SMTP_SEND_DEADLINE: '15s' }),
    );
    await waitFor('a third delivered', () => total(open.cell.sink.accepted), (count) => count >= open.cell.n, { timeoutMs: 90_000 });
    const filled = await disk.fill('data');
    const fullAt = Date.now();
    await expectReadyzNamesTheDisk('engine', engine);
    await delay(Math.max(0, FULL_MS - (Date.now() - fullAt))); // the full disk itself, not a wait for a state
    await disk.free('data');
    const faultEndedAt = Date.now();
    await accountOf(open.cell, inputs, faultEndedAt, `data mount filled (${Math.round(filled / 1e6)} MB of filler) for 30 s with a third delivered; lease 20 s`);
    await readyzWhen(engine, 200);
  }, 400_000);

  it('WAL full during intake and delivery: PostgreSQL PANICs and stays down until space is freed, then everything resumes', async () => {
    const { open, running, traffic } = await intakeUnderWay('pg-wal-full');
    const filled = await disk.fill('wal');
    const fullAt = Date.now();
    await disk.exhaustWal();
    await waitFor('PostgreSQL to PANIC and stay down', () => disk.answers(), (answers) => !answers, { timeoutMs: 30_000, intervalMs: 250 });
    for (const process of [open.edge, running, open.api]) {
      expect((await readyzWhen(process, 503, 25_000)).status).toBe(503);
    }
    await delay(Math.max(0, FULL_MS - (Date.now() - fullAt))); // the full disk itself, not a wait for a state
    // It cannot start again while the WAL has no room.
    expect(await disk.answers()).toBe(false);
    expect(await disk.logs()).toMatch(/PANIC: {2}could not write to file "pg_wal\/xlogtemp\.\d+": No space left on device/);
    await disk.free('wal');
    const faultEndedAt = Date.now();
    await waitFor('PostgreSQL to start again by itself', () => disk.answers(), (answers) => answers, { timeoutMs: 60_000, intervalMs: 250 });
    const inputs = await traffic.done;
    await accountOf(open.cell, inputs, faultEndedAt, `WAL mount filled (${Math.round(filled / 1e6)} MB of filler) and pg_switch_wal() after a fifth was in; down 30 s`);
    for (const process of [open.edge, running, open.api]) {
      const ready = await readyzWhen(process, 200, 60_000);
      expect(ready.status, JSON.stringify(await readyzOf(process))).toBe(200);
    }
  }, 400_000);
});
