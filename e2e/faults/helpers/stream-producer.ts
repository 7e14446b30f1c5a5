// A producer on mail:delivery_commands (docs/api/delivery-commands.asyncapi.yaml, schema version 2):
// every XADD is retried until Redis acknowledges it, as a producer with an outbox would; an
// acknowledged XADD is a command the engine owes an outcome for.
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { COMMAND_STREAM } from '../../../apps/core/src/intake/consume-stream.ts';

export { COMMAND_STREAM };
export const FAULT_SOURCE = 'faults';

export interface StreamCommand {
  idempotencyKey: string;
  to: string;
  /** Characters added to the text, for entries that fill Redis sooner. */
  padding?: number;
}

/** The cell's command `index`; `channel` tells the stream's (`s`) from the API's (`a`) apart. */
export function faultCommand(cell: string, index: number, channel: 's' | 'a' = 's'): StreamCommand {
  return { idempotencyKey: `${cell}-${channel}${index}`, to: `${cell}-${channel}${index}@sink.test` };
}

function fields(cell: string, command: StreamCommand): string[] {
  const body = {
    source: FAULT_SOURCE,
    idempotencyKey: command.idempotencyKey,
    to: command.to,
    payload: { mode: 'rendered', subject: `${cell} ${command.idempotencyKey}`, text: `Command ${command.idempotencyKey}.${'.'.repeat(command.padding ?? 0)}` },
  };
  return ['schema_version', '2', 'command', JSON.stringify(body)];
}

export interface XaddRecord {
  command: StreamCommand;
  /** The entry id Redis acknowledged, or null when the deadline passed first. */
  entryId: string | null;
  /** When it was acknowledged (epoch ms). */
  at: number;
}

/** A producer that counts an XADD as done only once `replicas` replicas have it (WAIT replicas
 *  timeoutMs): one a failover could lose is XADDed again, with the same idempotency key. */
export interface ReplicaConfirmation {
  replicas: number;
  timeoutMs: number;
  /** Called for each XADD the replicas did not confirm in time (it is XADDed again). */
  onUnconfirmed?: () => void;
}

async function confirmed(redis: Redis, confirm: ReplicaConfirmation | undefined): Promise<boolean> {
  if (!confirm) return true;
  const replicas = Number(await redis.call('WAIT', confirm.replicas, confirm.timeoutMs));
  if (replicas >= confirm.replicas) return true;
  confirm.onUnconfirmed?.();
  return false;
}

/** XADDs every command in order, `pace` between them (the intake is a flow, not a burst). */
export async function produceAll(
  redis: Redis,
  cell: string,
  commands: StreamCommand[],
  options: {
    deadlineMs: number;
    paceMs?: number;
    onAcknowledged?: () => void;
    /** Called with each error an XADD got (it is XADDed again). */
    onRefused?: (error: Error) => void;
    confirm?: ReplicaConfirmation;
  },
): Promise<XaddRecord[]> {
  const deadline = Date.now() + options.deadlineMs;
  const records: XaddRecord[] = [];
  for (const command of commands) {
    let entryId: string | null = null;
    while (entryId === null && Date.now() < deadline) {
      try {
        const id = await redis.xadd(COMMAND_STREAM, '*', ...fields(cell, command));
        entryId = id && (await confirmed(redis, options.confirm)) ? id : null;
      } catch (error) {
        options.onRefused?.(error as Error);
        await delay(200);
      }
    }
    records.push({ command, entryId, at: Date.now() });
    if (entryId !== null) options.onAcknowledged?.();
    if (options.paceMs) await delay(options.paceMs);
  }
  return records;
}
