// sendEmail goes through the shared intake, the same decode → check → accept code the engine runs
// for the Redis Stream: the API builds a schema-v2 command, so a command means the same thing on
// either channel, and a refusal is quarantined the same way (channel 'api').
import {
  type AcceptOutcome,
  acceptCommand,
  type DecodeFailure,
  decodeCommand,
  type Pool,
  quarantineCommand,
  type TemplateCatalog,
} from '@postern/shared';

export interface SendEmailCommand {
  source: string;
  idempotencyKey: string;
  to: string;
  category: string | null;
  deliveryId: string | null;
  payload:
    | { mode: 'template'; templateId: string; locale: string | null; variables: unknown }
    | { mode: 'rendered'; subject: string; text: string | null; html: string | null };
}

export type SendEmailOutcome = Exclude<AcceptOutcome, { status: 'refused' }> | { status: 'refused'; failure: DecodeFailure };

export interface SendEmailIntake {
  submit(command: SendEmailCommand): Promise<SendEmailOutcome>;
}

export function createSendEmailIntake(pool: Pool, options: { catalog: TemplateCatalog; sender: string }): SendEmailIntake {
  return {
    async submit(command) {
      const { payload, ...rest } = command;
      const body = JSON.stringify({
        ...rest,
        payload:
          payload.mode === 'template'
            ? { mode: 'template', templateId: payload.templateId, locale: payload.locale, variables: payload.variables }
            : payload,
      });
      const fields = { schema_version: '2', command: body };
      const decoded = decodeCommand(fields);
      const outcome: AcceptOutcome = decoded.ok
        ? await acceptCommand(pool, decoded.command, options)
        : { status: 'refused', failure: decoded.failure };
      if (outcome.status === 'refused') {
        await quarantineCommand(pool, { channel: 'api', streamEntryId: null, raw: JSON.stringify(fields) }, outcome.failure);
      }
      return outcome;
    },
  };
}
