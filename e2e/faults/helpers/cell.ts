// What every fault cell shares: the edge's local domain and the cell's alias (SMTP mail for
// <cell>@fault.test is relayed to <cell>@sink.test), the engine's environment pointing at the
// cell's fault sink and Redis, and the traffic itself — N messages over SMTP and N stream commands,
// sent together.
import { createAlias, createDomain } from '@postern/shared';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { faultMessage, type SendRecord, sendAll, type SenderOptions } from './smtp-sender.ts';
import { COMMAND_STREAM, faultCommand, produceAll, type XaddRecord } from './stream-producer.ts';

export const FAULT_DOMAIN = 'fault.test';

/** N per channel per cell; POSTERN_FAULT_N overrides it (the lead's larger runs). */
export function cellSize(fallback: number): number {
  const override = Number(process.env.POSTERN_FAULT_N);
  return Number.isInteger(override) && override > 0 ? override : fallback;
}

/** The alias the cell's SMTP mail is addressed to. */
export async function prepareCell(pool: pg.Pool, cell: string): Promise<string> {
  await createDomain(pool, FAULT_DOMAIN).catch((error: Error) => {
    if (!/exist|duplicate|unique/i.test(error.message)) throw error;
  });
  await createAlias(pool, { domain: FAULT_DOMAIN, localPart: cell, kind: 'forward', targets: [`${cell}@sink.test`] });
  return `${cell}@${FAULT_DOMAIN}`;
}

/** Engine settings of every cell; a cell adds or overrides what its fault needs. */
export function cellEngineEnv(sink: { host: string; port: number }, redisAddr: string, cell: string, extra: Record<string, string> = {}) {
  return {
    MAIL_SMTP_ADDR: `${sink.host}:${sink.port}`,
    MAIL_REDIS_MASTER_ADDR: redisAddr,
    MAIL_REDIS_CONSUMER_GROUP: `faults-${cell}`,
    MAIL_POSTGRES_CONNECT_TIMEOUT: '2s',
    MAIL_RETRY_LADDER: '500ms,1s,2s,4s,8s',
    ...extra,
  };
}

export const EDGE_ENV = { MAIL_MTA_RATE_LIMIT_PER_MINUTE: '100000', MAIL_POSTGRES_CONNECT_TIMEOUT: '2s' };

/** Empties the stream so a cell's engine never reads an earlier cell's commands. Call before its engine starts. */
export async function freshStream(redis: Redis): Promise<void> {
  await redis.del(COMMAND_STREAM);
}

export interface Traffic {
  sent: SendRecord[];
  produced: XaddRecord[];
}

export interface TrafficOptions {
  cell: string;
  n: number;
  rcpt: string;
  redis: Redis;
  sender: Omit<SenderOptions, 'deadlineMs'> & { deadlineMs?: number };
  /** Between XADDs, so the stream is a flow the fault can fall into. */
  paceMs?: number;
}

export interface RunningTraffic {
  /** Inputs handed over so far (SMTP 250s + XADD acknowledgements): for timing the fault. */
  progress(): number;
  done: Promise<Traffic>;
}

export function startTraffic(options: TrafficOptions): RunningTraffic {
  const messages = Array.from({ length: options.n }, (_, i) => faultMessage(options.cell, i, options.rcpt));
  const commands = Array.from({ length: options.n }, (_, i) => faultCommand(options.cell, i));
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
  const produced = produceAll(options.redis, options.cell, commands, { deadlineMs, paceMs: options.paceMs ?? 20, onAcknowledged: count });
  return {
    progress: () => progress,
    done: Promise.all([sent, produced]).then(([s, p]) => ({ sent: s, produced: p })),
  };
}
