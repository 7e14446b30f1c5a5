// MAIL_MTA_PROCESSES=2: `node apps/mta/src/main.ts` becomes a primary with two workers that each
// listen on the SMTP address with their own socket (SO_REUSEPORT). Shown against the real process:
// both workers serve connections (the pid on each "connection opened" line), /metrics sums them (the
// STARTTLS certificate's expiry is the earliest, not a sum), a
// worker killed with SIGKILL is forked again while the other keeps answering (and the sum keeps
// its counts), a second edge on the
// same address fails its start, and SIGTERM (to the primary, or to all of them) stops everything —
// every 250 being a stored message.
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createAlias, createDomain } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';
import { SmtpTestClient, sendMail, simpleMessage } from './helpers/smtp-client.ts';
import { makeSelfSignedCertificate, type TestCertificate } from './helpers/tls-certificate.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface EdgeProcess {
  child: ChildProcess;
  lines: string[];
  exited: { done: boolean; code: number | null; signal: string | null };
}

interface LogLine {
  msg?: string;
  pid?: number;
  workerPid?: number;
  worker?: number;
  address?: string;
  code?: number | null;
  signal?: string | null;
}

const spawned: EdgeProcess[] = [];
let certificate: TestCertificate;

function spawnEdge(dsn: string, smtpAddr: string, shutdownTimeout = '5s'): EdgeProcess {
  const child = spawn(process.execPath, ['apps/mta/src/main.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      MAIL_POSTGRES_PRIMARY_DSN: dsn,
      MAIL_SMTP_LISTEN_ADDR: smtpAddr,
      MAIL_MTA_HTTP_ADDR: '127.0.0.1:0',
      MAIL_MTA_HOSTNAME: 'mx.postern.test',
      MAIL_MTA_PROCESSES: '2',
      MAIL_SHUTDOWN_TIMEOUT: shutdownTimeout,
      // Each worker loads it and reports its expiry: /metrics must give one expiry, not their sum.
      MAIL_MTA_TLS_CERT: certificate.certFile,
      MAIL_MTA_TLS_KEY: certificate.keyFile,
      // "connection opened" is a debug line: it carries the pid of the worker that took the connection.
      MAIL_LOG_LEVEL: 'debug',
      MAIL_LOG_FORMAT: 'json',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const edge: EdgeProcess = { child, lines: [], exited: { done: false, code: null, signal: null } };
  spawned.push(edge);
  // 'close': exited, and every line of it and of its workers (the same pipes) read.
  child.on('close', (code, signal) => Object.assign(edge.exited, { done: true, code, signal }));
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => edge.lines.push(line));
  }
  return edge;
}

function parsed(edge: EdgeProcess, message: string): LogLine[] {
  return edge.lines.filter((line) => line.includes(`"${message}"`)).map((line) => JSON.parse(line) as LogLine);
}

function portIn(line: LogLine | undefined): number {
  return Number(line?.address?.split(':').pop() ?? 0);
}

/** Gone, or a zombie its parent has not reaped yet: either way its sockets are closed. */
function isGone(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    return readFileSync(stat, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

let db: TestDatabase;
let edge: EdgeProcess;
let smtpPort = 0;
let httpPort = 0;
/** Every message the edge answered 250, by this file. */
let accepted = 0;

async function metrics(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

function sample(text: string, name: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`) || candidate.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ').pop());
}

/** One message on a new connection; its final reply code. */
async function sendOne(subject: string): Promise<number> {
  const { client } = await SmtpTestClient.connect(smtpPort);
  await client.command('EHLO client.outside.test');
  const result = await sendMail(client, { from: 'a@outside.test', to: ['box@postern.test'], message: simpleMessage(subject) });
  await client.quit();
  const code = result.final?.code ?? 0;
  if (code === 250) accepted += 1;
  return code;
}

async function storedMessages(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.messages');
  return rows[0]?.n ?? -1;
}

function workerPids(): Map<number, number> {
  // The latest pid of each worker slot.
  const pids = new Map<number, number>();
  for (const line of parsed(edge, 'edge worker listening')) if (line.worker && line.workerPid) pids.set(line.worker, line.workerPid);
  return pids;
}

function connectionPids(): number[] {
  return parsed(edge, 'connection opened').map((line) => line.pid ?? 0);
}

beforeAll(async () => {
  certificate = makeSelfSignedCertificate('mx.postern.test');
  db = await createTestDatabase('mta-processes');
  await createDomain(db.pool, 'postern.test');
  await createAlias(db.pool, { domain: 'postern.test', localPart: 'box', kind: 'forward', targets: ['box@inbox.test'] });
  edge = spawnEdge(db.dsn, '127.0.0.1:0');
  await waitFor(
    'the primary to see both workers listen and open its HTTP listener',
    () => {
      if (edge.exited.done) throw new Error(`exited early: ${edge.lines.join('\n')}`);
      httpPort = portIn(parsed(edge, 'HTTP listener open')[0]);
      // (A worker's log line may come through the pipe after the primary's, which its IPC message caused.)
      return httpPort > 0 && parsed(edge, 'edge workers listening').length === 1 && parsed(edge, 'SMTP listener open').length === 2;
    },
    Boolean,
    { timeoutMs: 30_000 },
  );
  smtpPort = portIn(parsed(edge, 'edge workers listening')[0]);
}, 60_000);

afterAll(async () => {
  // SIGTERM, the orderly stop, for whatever a failed test left running.
  for (const { child, exited } of spawned) if (!exited.done) child.kill('SIGTERM');
  await waitFor('every edge started here to exit', () => spawned.every(({ exited }) => exited.done), Boolean, { timeoutMs: 20_000 });
  await db?.drop();
  certificate?.remove();
});

describe('MAIL_MTA_PROCESSES=2', () => {
  it('forks two workers that listen on the one SMTP port, and is ready', async () => {
    const pids = workerPids();
    expect(pids.size).toBe(2);
    expect([...pids.values()]).not.toContain(edge.child.pid);
    // Each worker bound the port the primary claimed (127.0.0.1:0 became one port for both).
    const listeners = parsed(edge, 'SMTP listener open');
    expect(listeners.map(portIn)).toEqual([smtpPort, smtpPort]);
    expect(new Set(listeners.map((line) => line.pid))).toEqual(new Set(pids.values()));
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { postgres: 'ok', smtp: 'ok' } });
  });

  it('spreads connections over both workers, and /metrics sums what they counted', async () => {
    const before = connectionPids().length;
    for (let message = 0; message < 24; message++) expect(await sendOne(`spread ${message}`)).toBe(250);
    // The kernel picks a socket by the connection's hash: 24 connections all on one of two sockets
    // would be a 1 in 8 million chance.
    await waitFor('a log line for every connection', () => connectionPids().length - before >= 24);
    expect(new Set(connectionPids().slice(before))).toEqual(new Set(workerPids().values()));

    const text = await metrics();
    expect(sample(text, 'mail_mta_messages_accepted_total')).toBe(accepted);
    expect(sample(text, 'mail_mta_connections_total')).toBe(24);
    expect(sample(text, 'mail_mta_accept_duration_ms_count')).toBe(accepted);
    expect(sample(text, 'mail_mta_data_memory_budget_bytes')).toBe(2 * 512 * 1024 * 1024);
    expect(sample(text, 'mail_mta_workers_listening')).toBe(2);
    expect(sample(text, 'mail_mta_worker_restarts_total')).toBe(0);
    expect(sample(text, 'mail_process_ready')).toBe(1);
    // The certificate's gauges combine as the worst worker's value (min, max), never a sum.
    const notAfter = new Date(new X509Certificate(readFileSync(certificate.certFile)).validTo).getTime() / 1_000;
    expect(sample(text, 'mail_mta_tls_certificate_not_after_seconds')).toBe(notAfter);
    expect(sample(text, 'mail_mta_tls_certificate_files_refused')).toBe(0);
    // One family per name: the workers' sum and the primary's own series do not overlap.
    const families = text.split('\n').filter((line) => line.startsWith('# TYPE '));
    expect(families.length).toBeGreaterThan(20);
    expect(new Set(families).size).toBe(families.length);
    expect(await storedMessages()).toBe(accepted);
  });

  it('forks a worker killed with SIGKILL again, while the other keeps answering', async () => {
    const [[slot, victim]] = [...workerPids().entries()] as [[number, number]];
    const survivor = [...workerPids().values()].find((pid) => pid !== victim);
    process.kill(victim, 'SIGKILL');
    // Its pid turns zombie while its other threads still hold its socket (a connection then is cut):
    // gone is when the primary has reaped it, which it logs.
    await waitFor('the primary to see the killed worker exit', () => parsed(edge, 'edge worker exited unexpectedly; restarting it').length === 1);
    expect(isGone(victim)).toBe(true);
    // Mail sent while the worker is away and being forked again: all of it on the survivor, all 250.
    // (A failed send is recorded, not retried: waitFor would take a throw for "not yet".)
    const meanwhile: Array<number | string> = [];
    const restarted = await waitFor(
      'the primary to fork the worker again and see it listen',
      async () => {
        meanwhile.push(await sendOne(`meanwhile ${meanwhile.length}`).catch(String));
        const pid = workerPids().get(slot);
        return pid !== victim ? pid : undefined;
      },
      (pid) => pid !== undefined,
      { timeoutMs: 30_000, intervalMs: 0 },
    );
    expect(meanwhile.length).toBeGreaterThan(0);
    expect(meanwhile.filter((code) => code !== 250)).toEqual([]);
    const restartLog = parsed(edge, 'edge worker exited unexpectedly; restarting it');
    expect(restartLog).toEqual([expect.objectContaining({ worker: slot, workerPid: victim, signal: 'SIGKILL' })]);
    expect(edge.lines.find((line) => line.includes('"edge worker exited unexpectedly')) ?? '').toMatch(/"level":50/);

    // The new worker serves too, and the sum still counts every message: the dead worker's as it
    // last reported them (the scrape of the test before, after its last message), so no counter
    // went back, which Prometheus would take for a reset.
    const before = connectionPids().length;
    const after: Array<number | string> = [];
    await waitFor(
      'a connection served by the new worker',
      async () => {
        after.push(await sendOne(`after restart ${after.length}`).catch(String));
        return connectionPids().slice(before).includes(restarted as number);
      },
      Boolean,
      { timeoutMs: 20_000, intervalMs: 0 },
    );
    expect(after.filter((code) => code !== 250)).toEqual([]);
    for (const pid of connectionPids().slice(before)) expect([restarted, survivor]).toContain(pid);
    const text = await metrics();
    expect(sample(text, 'mail_mta_messages_accepted_total')).toBe(accepted);
    expect(sample(text, 'mail_mta_accept_duration_ms_count')).toBe(accepted);
    expect(sample(text, 'mail_mta_worker_restarts_total')).toBe(1);
    expect(sample(text, 'mail_mta_workers_listening')).toBe(2);
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    expect(await storedMessages()).toBe(accepted);
  });

  it('refuses to start a second edge on the same SMTP address (workers would share it silently)', async () => {
    const second = spawnEdge(db.dsn, `127.0.0.1:${smtpPort}`);
    await waitFor('the second edge to exit', () => second.exited.done, Boolean, { timeoutMs: 30_000 });
    expect(second.exited.code).toBe(1);
    expect(second.lines.join('\n')).toContain(`mta failed to start: cannot listen on 127.0.0.1:${smtpPort}`);
    expect(parsed(second, 'SMTP listener open')).toEqual([]);
  });

  it('on SIGTERM stops every worker (an idle session is told 421) and exits 0; every 250 is stored', async () => {
    const pids = [...workerPids().values()];
    const sessions = await Promise.all([0, 1, 2, 3, 4, 5].map(() => SmtpTestClient.connect(smtpPort)));
    for (const { client } of sessions) await client.command('EHLO client.outside.test');
    edge.child.kill('SIGTERM');
    // As systemd's control-group kill (or a terminal's Ctrl-C) does, the workers get the signal
    // too: with the primary's own, that is twice, and it must still be one orderly stop.
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    for (const { client } of sessions) {
      expect((await client.readReply(10_000)).raw).toBe('421 4.3.2 Service shutting down, try again later');
      await client.closed;
    }
    await waitFor('the primary to exit', () => edge.exited.done, Boolean, { timeoutMs: 20_000 });
    expect(edge.exited).toMatchObject({ code: 0, signal: null });
    expect(pids.every(isGone)).toBe(true);
    expect(parsed(edge, 'mta worker stopped').map((line) => line.pid).sort()).toEqual(pids.sort());
    expect(edge.lines.some((line) => line.includes('"mta stopped"'))).toBe(true);
    expect(accepted).toBeGreaterThan(24);
    expect(await storedMessages()).toBe(accepted);
  });
});

describe('MAIL_MTA_PROCESSES=2, a worker that does not stop', () => {
  it('is killed past MAIL_SHUTDOWN_TIMEOUT, and the primary exits 1 once every worker is gone', async () => {
    const frozen = spawnEdge(db.dsn, '127.0.0.1:0', '1s');
    await waitFor(
      'the second edge to start',
      () => {
        if (frozen.exited.done) throw new Error(`exited early: ${frozen.lines.join('\n')}`);
        return parsed(frozen, 'mta started').length === 1;
      },
      Boolean,
      { timeoutMs: 30_000 },
    );
    const [stuck, other] = parsed(frozen, 'edge worker listening').map((line) => line.workerPid as number);
    // A stopped process handles no signal but SIGKILL: a stand-in for a worker whose stop hangs.
    process.kill(stuck as number, 'SIGSTOP');
    frozen.child.kill('SIGTERM');
    await waitFor('the primary to exit', () => frozen.exited.done, Boolean, { timeoutMs: 20_000 });
    expect(frozen.exited).toMatchObject({ code: 1, signal: null });
    expect(parsed(frozen, 'edge worker did not stop in time; killing it')).toEqual([expect.objectContaining({ workerPid: stuck })]);
    expect(parsed(frozen, 'mta worker stopped').map((line) => line.pid)).toEqual([other]);
    expect(parsed(frozen, 'edge worker exited unexpectedly; restarting it')).toEqual([]);
    expect([stuck, other].every((pid) => isGone(pid as number))).toBe(true);
  });
});
