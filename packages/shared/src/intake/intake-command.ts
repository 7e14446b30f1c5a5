// The one intake of a delivery command, whichever channel it came by. Each channel has an adapter
// that turns what it received into a typed DeliveryCommand or a refusal: the stream's decodes an
// entry's fields (apps/core, decode-command.ts), GraphQL's validates sendEmail's input (apps/api).
// From there on it is this code: a typed command is checked and accepted (acceptCommand), and a
// refusal, whether the adapter's or acceptance's, is quarantined with the raw text the channel
// received (silent-encoding-change, docs/incidents.md: never dropped, never silently).
//
// A failure to write the quarantine row is thrown as QuarantineFailed, apart from a failure to
// accept: the stream treats them differently (a command whose quarantine cannot be written is
// acknowledged anyway, so the stream flows; one whose acceptance fails is retried).
import type { Queryable } from '../aliases/resolve-recipient.ts';
import type { Pool } from '../db/pool.ts';
import { type AcceptCommandOptions, acceptCommand } from './accept-command.ts';
import type { DecodeFailure, DeliveryCommand } from './delivery-command.ts';
import { type CommandChannel, quarantineCommand } from './quarantine.ts';

/** Where a command came from, for its quarantine row. */
export interface CommandOrigin {
  channel: CommandChannel;
  streamEntryId: string | null;
  /** What the channel received, as text. */
  raw: string;
}

export type IntakeOutcome =
  | { status: 'created'; deliveryId: string }
  | { status: 'duplicate'; deliveryId: string }
  | { status: 'refused'; failure: DecodeFailure; quarantineId: string };

export class QuarantineFailed extends Error {
  readonly failure: DecodeFailure;
  constructor(failure: DecodeFailure, cause: unknown) {
    super(`quarantining a ${failure.code} command failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'QuarantineFailed';
    this.failure = failure;
  }
}

/** Records a refused command in mail.malformed_commands. */
export async function refuseCommand(db: Queryable, failure: DecodeFailure, origin: CommandOrigin): Promise<IntakeOutcome & { status: 'refused' }> {
  try {
    return { status: 'refused', failure, quarantineId: await quarantineCommand(db, origin, failure) };
  } catch (error) {
    throw new QuarantineFailed(failure, error);
  }
}

/** Check → accept → quarantine on refusal. Throws what accepting throws (the database is away, a
 *  trigger raised), and QuarantineFailed when the refusal could not be recorded. */
export async function intakeCommand(
  pool: Pool,
  command: DeliveryCommand,
  origin: CommandOrigin,
  options: AcceptCommandOptions,
): Promise<IntakeOutcome> {
  const outcome = await acceptCommand(pool, command, options);
  return outcome.status === 'refused' ? refuseCommand(pool, outcome.failure, origin) : outcome;
}
