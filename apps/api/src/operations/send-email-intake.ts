// sendEmail goes through the one intake the engine runs for the Redis Stream (@postern/shared
// intakeCommand: check → accept, or quarantine): the request becomes a typed command here
// (send-email-command.ts), so a command means the same thing on either channel, and every refusal
// is quarantined the same way (channel 'api'), with the request as it was submitted. Each refusal
// carries the input field it is about: the adapter's from its schema, acceptance's from the check
// that refused it. The delivery continues the caller's trace: the context the mutation runs in
// (the HTTP span the instrumentation started from the caller's traceparent header), or, with
// tracing off in the API, the caller's header itself.
// Every refusal recorded is counted (mail_api_commands_malformed_total{failure_code}) and logged at
// info, one line naming its code, field, producer (`source`, as the stream's `stream command
// rejected` line does), detail and quarantine row: the caller has the answer, the operator sees how
// often and whose. Never the request's content (a login code in its variables): the detail names
// fields and rules, not values (command-fields.ts), and the raw text stays in the row.
import {
  type AcceptCommandOptions,
  type CommandOrigin,
  currentTraceparent,
  type DecodeFailure,
  type FailureCode,
  type IntakeOutcome,
  intakeCommand,
  type Logger,
  MAX_VARIABLES_DEPTH,
  type Pool,
  type prometheus,
  refuseCommand,
} from '@postern/shared';
import { type SendEmailRequest, sendEmailCommand } from './send-email-command.ts';

export type SendEmailOutcome = Exclude<IntakeOutcome, { status: 'refused' }> | { status: 'refused'; failure: DecodeFailure; field: string };

export interface SendEmailIntake {
  /** `callerTraceparent`: the request's traceparent header, normalised (null: none or invalid). */
  submit(request: SendEmailRequest, callerTraceparent?: string | null): Promise<SendEmailOutcome>;
}

// The request is nested two levels above its template variables (input → template → variables),
// which are refused beyond MAX_VARIABLES_DEPTH: whatever lies deeper than this is in a refused
// request, and its text says it was left out.
const MAX_REQUEST_TEXT_DEPTH = MAX_VARIABLES_DEPTH + 8;

/** The request as the JSON text it is quarantined as (and measured by, too_large). JSON.stringify
 *  recurses: template variables 5,000 levels deep overflowed the stack before any rule could refuse
 *  them, so a value deeper than MAX_REQUEST_TEXT_DEPTH is written as a marker instead. */
export function requestText(request: SendEmailRequest): string {
  const depths = new WeakMap<object, number>();
  return JSON.stringify(request, function (this: object, _key: string, value: unknown) {
    if (value === null || typeof value !== 'object') return value;
    const depth = (depths.get(this) ?? 0) + 1;
    if (depth > MAX_REQUEST_TEXT_DEPTH) return `…[nested deeper than ${MAX_REQUEST_TEXT_DEPTH} levels: not recorded]`;
    depths.set(value, depth);
    return value;
  });
}

/** The input fields acceptance's checks look at. */
const CHECKED_FIELD: Partial<Record<FailureCode, string>> = {
  unknown_template: 'template.id',
  missing_variable: 'template.variables',
  // Acceptance refuses a field only for variables the template cannot be rendered with.
  invalid_field: 'template.variables',
  idempotency_conflict: 'idempotencyKey',
};

/** Where refusals are reported: the counter mail_api_commands_malformed_total and the API's log. */
export interface SendEmailRefusals {
  counter: prometheus.Counter<'failure_code'>;
  logger: Logger;
}

export function createSendEmailIntake(pool: Pool, options: AcceptCommandOptions, refusals: SendEmailRefusals): SendEmailIntake {
  function refused(source: string, failure: DecodeFailure, field: string, quarantineId: string): SendEmailOutcome {
    refusals.counter.inc({ failure_code: failure.code });
    refusals.logger.info({ failureCode: failure.code, field, source, detail: failure.detail, quarantineId }, 'sendEmail command refused');
    return { status: 'refused', failure, field };
  }
  return {
    async submit(request, callerTraceparent = null) {
      const origin: CommandOrigin = { channel: 'api', streamEntryId: null, raw: requestText(request) };
      const typed = sendEmailCommand(request, origin.raw);
      if (!typed.ok) {
        const { quarantineId } = await refuseCommand(pool, typed.failure, origin);
        return refused(request.source, typed.failure, typed.field, quarantineId);
      }
      const command = { ...typed.command, traceparent: currentTraceparent() ?? callerTraceparent };
      const outcome = await intakeCommand(pool, command, origin, options);
      if (outcome.status !== 'refused') return outcome;
      return refused(request.source, outcome.failure, CHECKED_FIELD[outcome.failure.code] ?? 'input', outcome.quarantineId);
    },
  };
}
