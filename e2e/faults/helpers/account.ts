// The account every fault cell ends with: what came in (answered 250 at the edge, acknowledged by
// Redis's XADD) against what the database and the relay say happened to it. Nothing in may be
// missing: each input is sent, failed, dead-lettered or suppressed (or, where the cell's fault is a
// deferral that outlasts the test, still retrying with its reason); duplicates are counted at the
// relay by Message-ID / X-Fault-Key, not taken from the engine's own books. The account is
// computed and printed even when the cell then fails, so a failing cell still reports its numbers.
// Time to recover runs from the end of the fault (or of the intake, where the intake outlasts it)
// to the moment the last input was accounted for.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { repoRoot } from '../../core/helpers/engine.ts';
import type { FaultSink } from '../../harness/fault-sink.ts';
import type { SendRecord } from './smtp-sender.ts';
import { FAULT_SOURCE, type XaddRecord } from './stream-producer.ts';

const TERMINAL = new Set(['sent', 'failed', 'dead_letter', 'suppressed', 'cancelled']);

/** What the account reads from the relay: messages it answered 250, by key (fault-sink.ts keyOf). */
export interface RelayCounts {
  accepted: FaultSink['accepted'];
  /** Brings `accepted` up to date before it is read, where the relay runs elsewhere (a container). */
  refresh?(): Promise<void>;
}

export interface AccountRequest {
  cell: string;
  pool: pg.Pool;
  sink: RelayCounts;
  sent: SendRecord[];
  produced: XaddRecord[];
  /** When the fault was over (epoch ms): time to recover is measured from here. */
  faultEndedAt: number;
  /** How long the cell may take to settle after the traffic is in. */
  settleMs: number;
  /**
   * 'zero' where every engine and edge stayed alive; 'outcome-unknown' where an engine was killed
   * (each duplicate must be an outcome_unknown attempt); a number where the bound is known otherwise
   * (an edge killed after the final dot: the sender's unanswered transactions).
   */
  duplicateBound: 'zero' | 'outcome-unknown' | number;
  /** The fault is a deferral that outlasts the test: inputs still retrying with a reason are accounted. */
  retryingAccounted?: boolean;
  /** Stream entries the fault itself destroyed before any engine could read them (Redis restarted empty). */
  destroyedBeforeRead?: (record: XaddRecord) => boolean;
  note?: string;
  /** More for the notes, read when the account is taken (metrics, relay counters). */
  annotate?: () => Promise<string>;
}

export interface Account {
  cell: string;
  nIn: number;
  smtpIn: number;
  streamIn: number;
  /** SMTP messages the edge never answered 250 (refused or deadline passed): not "in", listed apart. */
  notAcceptedAtEdge: number;
  delivered: number;
  failedDeadSuppressed: number;
  retrying: number;
  duplicates: number;
  /** Messages the edge stored more than once (one SMTP message, several deliveries to one target). */
  storedTwice: number;
  outcomeUnknown: number;
  lost: number;
  stuck: number;
  destroyedBeforeRead: number;
  recoverMs: number | null;
  details: string[];
}

interface Row {
  key: string;
  status: string;
  last_error: string | null;
  rfc_message_id: string;
  id: string;
}

const SMTP_ROWS = `
SELECT trim(both '<>' from m.message_id_header) AS key, d.id, d.status, d.last_error, d.rfc_message_id
  FROM mail.deliveries d JOIN mail.messages m ON m.id = d.message_id
 WHERE trim(both '<>' from m.message_id_header) = ANY($1::text[])`;

const STREAM_ROWS = `
SELECT d.idempotency_key AS key, d.id, d.status, d.last_error, d.rfc_message_id
  FROM mail.deliveries d
 WHERE d.source = $1 AND d.idempotency_key = ANY($2::text[])`;

const OUTCOME_UNKNOWN = `SELECT count(*)::int AS n FROM mail.attempts WHERE status = 'outcome_unknown' AND delivery_id = ANY($1::uuid[])`;

function group(rows: Row[]): Map<string, Row[]> {
  const byKey = new Map<string, Row[]>();
  for (const row of rows) byKey.set(row.key, [...(byKey.get(row.key) ?? []), row]);
  return byKey;
}

interface Snapshot {
  smtp: Map<string, Row[]>;
  stream: Map<string, Row[]>;
}

async function snapshot(request: AccountRequest, smtpKeys: string[], streamKeys: string[]): Promise<Snapshot> {
  const smtp = await request.pool.query<Row>(SMTP_ROWS, [smtpKeys]);
  const stream = await request.pool.query<Row>(STREAM_ROWS, [FAULT_SOURCE, streamKeys]);
  return { smtp: group(smtp.rows), stream: group(stream.rows) };
}

function settled(request: AccountRequest, snap: Snapshot, smtpKeys: string[], streamIn: XaddRecord[]): boolean {
  const done = (rows: Row[] | undefined) =>
    rows !== undefined &&
    rows.length > 0 &&
    rows.every((row) => TERMINAL.has(row.status) || (request.retryingAccounted === true && row.status === 'retrying' && row.last_error !== null));
  const excused = request.destroyedBeforeRead ?? (() => false);
  return (
    smtpKeys.every((key) => done(snap.smtp.get(key))) &&
    streamIn.every((record) => done(snap.stream.get(record.command.idempotencyKey)) || (excused(record) && !snap.stream.has(record.command.idempotencyKey)))
  );
}

/** Waits (up to settleMs) for every input to reach an accounted state, then counts. */
export async function takeAccount(request: AccountRequest): Promise<Account> {
  const smtpIn = request.sent.filter((record) => record.final?.startsWith('250'));
  const smtpKeys = smtpIn.map((record) => record.token);
  const streamIn = request.produced.filter((record) => record.entryId !== null);
  const streamKeys = streamIn.map((record) => record.command.idempotencyKey);
  const deadline = Date.now() + request.settleMs;
  let snap = await snapshot(request, smtpKeys, streamKeys);
  let recoverMs: number | null = null;
  for (;;) {
    if (settled(request, snap, smtpKeys, streamIn)) {
      recoverMs = Math.max(0, Date.now() - request.faultEndedAt);
      break;
    }
    if (Date.now() >= deadline) break;
    await delay(250);
    snap = await snapshot(request, smtpKeys, streamKeys);
  }
  // Late copies at the relay (a re-send racing the last status change) are given a moment to land.
  await delay(1_000);
  snap = await snapshot(request, smtpKeys, streamKeys);
  await request.sink.refresh?.();

  const details: string[] = [];
  const account: Account = {
    cell: request.cell,
    nIn: smtpIn.length + streamIn.length,
    smtpIn: smtpIn.length,
    streamIn: streamIn.length,
    notAcceptedAtEdge: request.sent.length - smtpIn.length + (request.produced.length - streamIn.length),
    delivered: 0,
    failedDeadSuppressed: 0,
    retrying: 0,
    duplicates: 0,
    storedTwice: 0,
    outcomeUnknown: 0,
    lost: 0,
    stuck: 0,
    destroyedBeforeRead: 0,
    recoverMs,
    details,
  };
  const tally = (what: string, rows: Row[] | undefined, sinkKeys: string[]) => {
    const atSink = sinkKeys.reduce((sum, key) => sum + (request.sink.accepted.get(key) ?? 0), 0);
    if (atSink > 1) {
      account.duplicates += atSink - 1;
      if (details.length < 12) details.push(`duplicate x${atSink}: ${what}`);
    }
    if (!rows || rows.length === 0) {
      account.lost += 1;
      if (details.length < 12) details.push(`lost (no delivery row): ${what}`);
      return;
    }
    if (rows.length > 1) account.storedTwice += 1;
    if (atSink > 0) {
      account.delivered += 1;
      return;
    }
    if (rows.some((row) => row.status === 'sent')) {
      account.lost += 1;
      if (details.length < 12) details.push(`lost (recorded sent, never accepted by the relay): ${what}`);
    } else if (rows.every((row) => TERMINAL.has(row.status))) {
      account.failedDeadSuppressed += 1;
    } else if (request.retryingAccounted && rows.every((row) => TERMINAL.has(row.status) || (row.status === 'retrying' && row.last_error))) {
      account.retrying += 1;
    } else {
      account.stuck += 1;
      if (details.length < 12) details.push(`stuck ${rows.map((row) => `${row.status} (${row.last_error ?? 'no reason'})`).join(', ')}: ${what}`);
    }
  };
  for (const record of smtpIn) {
    tally(`smtp ${record.token}`, snap.smtp.get(record.token), [record.token]);
  }
  const excused = request.destroyedBeforeRead ?? (() => false);
  for (const record of streamIn) {
    const rows = snap.stream.get(record.command.idempotencyKey);
    if ((!rows || rows.length === 0) && excused(record)) {
      account.destroyedBeforeRead += 1;
      continue;
    }
    tally(`stream ${record.command.idempotencyKey}`, rows, (rows ?? []).map((row) => row.rfc_message_id));
  }
  const ids = [...snap.smtp.values(), ...snap.stream.values()].flat().map((row) => row.id);
  account.outcomeUnknown = (await request.pool.query<{ n: number }>(OUTCOME_UNKNOWN, [ids])).rows[0]?.n ?? 0;
  const extra = request.annotate ? await request.annotate().catch((error: Error) => `annotate failed: ${error.message}`) : '';
  report(account, request, extra);
  return account;
}

function seconds(ms: number | null, settleMs: number): string {
  return ms === null ? `not within ${Math.round(settleMs / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}

function bound(request: AccountRequest, account: Account): string {
  if (request.duplicateBound === 'zero') return 'allowed 0';
  if (request.duplicateBound === 'outcome-unknown') return `allowed ${account.outcomeUnknown}: outcome_unknown attempts`;
  return `allowed ${request.duplicateBound}: sender's unanswered transactions`;
}

const HEADER = [
  '| cell | N in (smtp+stream) | delivered | failed/dead/suppressed | still retrying | duplicates | lost | stuck | time to recover | notes |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];

function report(account: Account, request: AccountRequest, extra: string): void {
  const notes = [
    request.note,
    extra,
    account.storedTwice ? `${account.storedTwice} stored twice by the edge` : '',
    account.notAcceptedAtEdge ? `${account.notAcceptedAtEdge} never accepted at the intake` : '',
    account.destroyedBeforeRead ? `${account.destroyedBeforeRead} acknowledged XADDs destroyed by Redis itself before any engine read them` : '',
  ]
    .filter(Boolean)
    .join('; ');
  const line =
    `| ${account.cell} | ${account.nIn} (${account.smtpIn}+${account.streamIn}) | ${account.delivered} | ${account.failedDeadSuppressed} | ` +
    `${account.retrying} | ${account.duplicates} (${bound(request, account)}) | ${account.lost} | ${account.stuck} | ` +
    `${seconds(account.recoverMs, request.settleMs)} | ${notes} |`;
  console.log(`[fault-matrix] ${line}`);
  for (const detail of account.details) console.log(`[fault-matrix]   ${account.cell}: ${detail}`);
  // One file per cell, then the table rebuilt from all of them: two vitest workers never write the
  // same file at once, and a rerun of one cell replaces only its own row.
  const dir = path.join(repoRoot, '.test-results', 'fault-matrix');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${account.cell}.md`), `${line}\n`);
  const rows = readdirSync(dir)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => readFileSync(path.join(dir, name), 'utf8').trimEnd());
  writeFileSync(path.join(repoRoot, '.test-results', 'fault-matrix.md'), `${[...HEADER, ...rows].join('\n')}\n`);
}

/** The cell's required behaviour, asserted after the account is printed. */
export function violations(account: Account, request: AccountRequest): string[] {
  const problems: string[] = [];
  const allowed =
    request.duplicateBound === 'zero' ? 0 : request.duplicateBound === 'outcome-unknown' ? account.outcomeUnknown : request.duplicateBound;
  if (account.duplicates > allowed) problems.push(`${account.duplicates} duplicate(s) at the relay, at most ${allowed} allowed`);
  if (account.lost > 0) problems.push(`${account.lost} lost`);
  if (account.stuck > 0) problems.push(`${account.stuck} neither finished nor retrying with a reason`);
  if (account.notAcceptedAtEdge > 0) problems.push(`${account.notAcceptedAtEdge} never accepted at the intake within the sender's deadline`);
  if (account.recoverMs === null) problems.push(`not settled within ${request.settleMs} ms`);
  return problems;
}
