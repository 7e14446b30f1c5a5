// What every fault cell shares: the edge's local domain and the cell's alias (SMTP mail for
// <cell>@fault.test is relayed to <cell>@sink.test), the engine's environment pointing at the
// cell's fault sink and Redis, the traffic itself — N messages over SMTP and N stream commands,
// sent together — and the account every cell ends with, asserted the same way in every file.
import { createAlias, createDomain } from '@postern/shared';
import type pg from 'pg';
import { expect } from 'vitest';
import type { Engine } from '../../../apps/core/src/engine.ts';
import type { Edge } from '../../../apps/mta/src/edge.ts';
import type { FaultSink } from '../../harness/fault-sink.ts';
import { type Account, type AccountRequest, takeAccount, violations } from './account.ts';
import type { FaultRedis } from './fault-redis.ts';
import { faultMessage, type SenderOptions, type SendRecord, sendAll } from './smtp-sender.ts';
import { COMMAND_STREAM, faultCommand, produceAll, type XaddRecord } from './stream-producer.ts';

export const FAULT_DOMAIN = 'fault.test';

export const EDGE_ENV = { MAIL_MTA_RATE_LIMIT_PER_MINUTE: '100000', MAIL_POSTGRES_CONNECT_TIMEOUT: '2s' };

/** N per channel per cell; POSTERN_FAULT_N overrides it (the lead's larger runs). */
export function cellSize(fallback: number): number {
  const override = Number(process.env.POSTERN_FAULT_N);
  return Number.isInteger(override) && override > 0 ? override : fallback;
}

/** One cell: its name (alias, consumer group, message tokens, row in the table), N, and where its inputs go and are counted. */
export interface FaultCell {
  cell: string;
  n: number;
  /** The alias the cell's SMTP mail is addressed to. */
  rcpt: string;
  /** The database the cell's edge and engines use, and a pool on it for the account. */
  dsn: string;
  pool: pg.Pool;
  /** Where the cell's engines read commands (MAIL_REDIS_MASTER_ADDR) and its producer writes them. */
  redis: Pick<FaultRedis, 'addr' | 'client'>;
  sink: FaultSink;
}

/**
 * Creates the cell's alias and empties the stream, so the cell's engine never reads an earlier
 * cell's commands. Call before the cell's engine starts.
 */
export async function openCell(parts: Omit<FaultCell, 'rcpt'>): Promise<FaultCell> {
  await createDomain(parts.pool, FAULT_DOMAIN).catch((error: Error) => {
    if (!/exist|duplicate|unique/i.test(error.message)) throw error;
  });
  await createAlias(parts.pool, { domain: FAULT_DOMAIN, localPart: parts.cell, kind: 'forward', targets: [`${parts.cell}@sink.test`] });
  await parts.redis.client.del(COMMAND_STREAM);
  return { ...parts, rcpt: `${parts.cell}@${FAULT_DOMAIN}` };
}

/** Engine settings of every cell; a cell adds or overrides what its fault needs. */
export function cellEngineEnv(cell: FaultCell, extra: Record<string, string> = {}) {
  return {
    MAIL_SMTP_ADDR: `${cell.sink.host}:${cell.sink.port}`,
    MAIL_REDIS_MASTER_ADDR: cell.redis.addr,
    MAIL_REDIS_CONSUMER_GROUP: `faults-${cell.cell}`,
    MAIL_POSTGRES_CONNECT_TIMEOUT: '2s',
    MAIL_RETRY_LADDER: '500ms,1s,2s,4s,8s',
    ...extra,
  };
}

/** Sum of a fault sink's counters (received, accepted, RCPTs) over every key. */
export function total(counts: Map<string, number>): number {
  return [...counts.values()].reduce((sum, count) => sum + count, 0);
}

export interface Traffic {
  sent: SendRecord[];
  produced: XaddRecord[];
}

export interface TrafficOptions {
  sender: Omit<SenderOptions, 'deadlineMs'> & { deadlineMs?: number };
  /** Between XADDs, so the stream is a flow the fault can fall into. */
  paceMs?: number;
}

export interface RunningTraffic {
  /** Inputs handed over so far (SMTP 250s + XADD acknowledgements): for timing the fault. */
  progress(): number;
  done: Promise<Traffic>;
}

/** N messages over SMTP and N stream commands for `cell`, sent together. */
export function startTraffic(cell: Pick<FaultCell, 'cell' | 'n' | 'rcpt'> & { redis: Pick<FaultRedis, 'client'> }, options: TrafficOptions): RunningTraffic {
  const messages = Array.from({ length: cell.n }, (_, i) => faultMessage(cell.cell, i, cell.rcpt));
  const commands = Array.from({ length: cell.n }, (_, i) => faultCommand(cell.cell, i));
  let progress = 0;
  const count = () => {
    progress += 1;
  };
  const deadlineMs = options.sender.deadlineMs ?? 180_000;
  const sent = sendAll(messages, {
    ...options.sender,
    deadlineMs,
    onAccepted: () => {
      count();
      options.sender.onAccepted?.();
    },
  });
  const produced = produceAll(cell.redis.client, cell.cell, commands, { deadlineMs, paceMs: options.paceMs ?? 20, onAcknowledged: count });
  return {
    progress: () => progress,
    done: Promise.all([sent, produced]).then(([s, p]) => ({ sent: s, produced: p })),
  };
}

/** What a cell says about its run; the rest of the account's request is the cell's and its traffic's. */
export type CellRun = Omit<AccountRequest, 'cell' | 'pool' | 'sink' | 'sent' | 'produced'>;

/** The account request of a cell and its traffic. */
export function accountRequest(cell: FaultCell, traffic: Traffic, run: CellRun): AccountRequest {
  return { cell: cell.cell, pool: cell.pool, sink: cell.sink, ...traffic, ...run };
}

/**
 * Takes the cell's account (printed whatever follows) and asserts what every cell whose relay
 * ends up accepting requires: no violation — nothing lost or stuck, duplicates within the bound,
 * settled in time — and every input delivered, except entries the fault itself destroyed
 * before any engine could read them.
 */
export async function expectEverythingDelivered(cell: FaultCell, traffic: Traffic, run: CellRun): Promise<Account> {
  const request = accountRequest(cell, traffic, run);
  const account = await takeAccount(request);
  expect(violations(account, request)).toEqual([]);
  expect(account.delivered).toBe(account.nIn - account.destroyedBeforeRead);
  return account;
}

/** What a cell started in this process, stopped after it: engines first, then the edge, then the relay, so no send meets a closed sink. */
export async function stopCellProcesses(started: { engines: Array<Engine | null>; edge: Edge | null; sink: FaultSink | null }): Promise<void> {
  await Promise.all(started.engines.map((engine) => engine?.stop()));
  await started.edge?.stop();
  await started.sink?.close();
}
