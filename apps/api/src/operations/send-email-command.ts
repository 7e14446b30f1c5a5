// GraphQL's adapter to the one intake: sendEmail's input becomes a typed DeliveryCommand directly,
// through zod schemas built from the same field rules as the stream's decoder (@postern/shared
// commandField), so the API refuses what the stream refuses, with the same failure code. Each
// schema names its field by its input path ("template.locale"), and a refusal's field is the path
// of the zod issue that refused it: known from the structure, never read back from a message.
import {
  commandField,
  type DecodeFailure,
  type DeliveryCommand,
  decodeFailure,
  firstRefusal,
  MAX_COMMAND_BYTES,
  renderedBody,
} from '@postern/shared';
import { z } from 'zod';

export interface TemplateContent {
  id: string;
  locale?: string | null;
  /** The JSON scalar: anything, until the schema says it is a JSON object. */
  variables?: unknown;
}

export interface RenderedContent {
  subject: string;
  text?: string | null;
  html?: string | null;
}

/** The input once the resolver has settled its producer and that it has exactly one content. */
export type SendEmailRequest = {
  source: string;
  to: string;
  idempotencyKey: string;
  category?: string | null;
  deliveryId?: string | null;
} & ({ template: TemplateContent; rendered?: null } | { rendered: RenderedContent; template?: null });

export type SendEmailCommandResult = { ok: true; command: DeliveryCommand } | { ok: false; failure: DecodeFailure; field: string };

// In the order of a v2 stream command's fields, so a request with several problems is refused for
// the one the stream would name.
const common = {
  source: commandField.source('source'),
  idempotencyKey: commandField.idempotencyKey('idempotencyKey'),
  deliveryId: commandField.deliveryId('deliveryId'),
  to: commandField.recipient('to'),
  category: commandField.category('category'),
};

// sendEmail's input has the v2 command's shape: recorded as schema version 2, as v2 refusals are.
const withTemplate = z
  .object({
    ...common,
    template: z.object({
      id: commandField.templateId('template.id'),
      locale: commandField.locale('template.locale'),
      variables: commandField.variables('template.variables'),
    }),
  })
  .transform(
    ({ template, to, ...fields }): DeliveryCommand => ({
      schemaVersion: '2',
      ...fields,
      recipient: to,
      payload: { mode: 'template', templateId: template.id, locale: template.locale, variables: template.variables },
      traceparent: null,
    }),
  );

const withRendered = z
  .object({
    ...common,
    rendered: z
      .object({ subject: commandField.subject('rendered.subject'), text: commandField.body('rendered.text'), html: commandField.body('rendered.html') })
      .superRefine(renderedBody('rendered.text', 'rendered.html')),
  })
  .transform(
    ({ rendered, to, ...fields }): DeliveryCommand => ({
      schemaVersion: '2',
      ...fields,
      recipient: to,
      payload: { mode: 'rendered', ...rendered },
      traceparent: null,
    }),
  );

/** `raw` is the request as it is quarantined; its size is the command's size (too_large). The
 *  command's traceparent is the intake's to set (send-email-intake.ts). */
export function sendEmailCommand(request: SendEmailRequest, raw: string): SendEmailCommandResult {
  const deliveryId = request.deliveryId ?? null;
  const refuse = (failure: DecodeFailure['code'], detail: string, field: string): SendEmailCommandResult => ({
    ok: false,
    failure: decodeFailure(failure, detail, { schemaVersion: '2', source: request.source, deliveryId: deliveryId && deliveryId.length <= 200 ? deliveryId : null }),
    field,
  });
  if (Buffer.byteLength(raw) > MAX_COMMAND_BYTES) return refuse('too_large', `command larger than ${MAX_COMMAND_BYTES} bytes`, 'input');
  const parsed = (request.template ? withTemplate : withRendered).safeParse({ ...request, deliveryId });
  if (parsed.success) return { ok: true, command: parsed.data };
  const refusal = firstRefusal(parsed.error);
  return refuse(refusal.code, refusal.detail, refusal.path.length > 0 ? refusal.path.map(String).join('.') : 'input');
}
