// sendEmail: an internal service asks for one mail to one recipient, from a catalog template or as
// rendered content, under an idempotency key. Same key and same content: the same delivery again
// (duplicate: true), never a second mail. Same key, other content: a ConflictError. Keys are the
// producer's own: the source is the token's producer (auth/producer-source.ts).

import { type DecodeFailure, isRetryableDbError } from '@postern/shared';
import { producerSource } from '../auth/producer-source.ts';
import type { SendEmailRequest } from '../operations/send-email-command.ts';
import { builder } from './builder.ts';
import { DeliveryRef, type DeliveryRow, deliveryById } from './delivery.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, databaseUnavailableError, type ValidationCode, ValidationError } from './errors.ts';

const TemplateContentInput = builder.inputType('TemplateContentInput', {
  fields: (t) => ({
    id: t.string({ required: true, description: 'A template of the catalog (MAIL_TEMPLATE_DIR).' }),
    locale: t.string({ required: false, description: 'e.g. pt-BR; falls back to the language, then the default.' }),
    variables: t.field({ type: 'JSON', required: true, description: 'Every required variable of the template.' }),
  }),
});

const RenderedContentInput = builder.inputType('RenderedContentInput', {
  fields: (t) => ({
    subject: t.string({ required: true }),
    text: t.string({ required: false }),
    html: t.string({ required: false }),
  }),
});

const SendEmailInput = builder.inputType('SendEmailInput', {
  description: 'Exactly one of `template` and `rendered`.',
  fields: (t) => ({
    to: t.string({ required: true }),
    idempotencyKey: t.string({ required: true, description: 'Unique per producer; a retry reuses it.' }),
    source: t.string({
      required: false,
      description: "The producer: always the token's own (`postern token create --producer`); any other value is FORBIDDEN.",
    }),
    category: t.string({ required: false, description: 'e.g. authsession (suppressed in stub mode).' }),
    deliveryId: t.id({ required: false, description: 'A UUID of your choosing, to know the id in advance.' }),
    template: t.field({ type: TemplateContentInput, required: false }),
    rendered: t.field({ type: RenderedContentInput, required: false }),
  }),
});

interface SendEmailPayloadShape {
  delivery: DeliveryRow;
  duplicate: boolean;
}

const SendEmailPayload = builder.objectRef<SendEmailPayloadShape>('SendEmailPayload').implement({
  fields: (t) => ({
    delivery: t.field({ type: DeliveryRef, resolve: (payload) => payload.delivery }),
    duplicate: t.exposeBoolean('duplicate', { description: 'true: this key was already accepted; nothing new was queued.' }),
  }),
});

/** A refusal as the typed error a client switches on; `field` is the input path it is about. */
function refusalError(failure: DecodeFailure, field: string): Error {
  if (failure.code === 'idempotency_conflict') return new ConflictError(failure.detail);
  const codes: Partial<Record<DecodeFailure['code'], ValidationCode>> = {
    invalid_address: 'INVALID_ADDRESS',
    unknown_template: 'UNKNOWN_TEMPLATE',
    missing_variable: 'MISSING_VARIABLE',
  };
  return new ValidationError(field, codes[failure.code] ?? 'INVALID_INPUT', failure.detail);
}

builder.mutationField('sendEmail', (t) =>
  t.field({
    type: SendEmailPayload,
    authScopes: { scope: 'send' },
    errors: { types: INPUT_ERRORS, result: { name: 'SendEmailSuccess' }, union: { name: 'SendEmailResult' } },
    args: { input: t.arg({ type: SendEmailInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const source = producerSource(context.principal, input.source, 'input.source');
      const { template, rendered, ...fields } = input;
      const request: SendEmailRequest | null =
        template && !rendered ? { ...fields, source, template } : rendered && !template ? { ...fields, source, rendered } : null;
      if (!request) throw new ValidationError('input', 'INVALID_INPUT', 'give exactly one of "template" and "rendered"');
      const outcome = await context.intake.submit(request, context.callerTraceparent).catch((error: unknown) => {
        if (isRetryableDbError(error)) throw databaseUnavailableError(error);
        throw error;
      });
      if (outcome.status === 'refused') throw refusalError(outcome.failure, outcome.field);
      const delivery = await deliveryById(context.db, outcome.deliveryId);
      if (!delivery) throw new Error(`delivery ${outcome.deliveryId} accepted but not found`);
      return { delivery, duplicate: outcome.status === 'duplicate' };
    },
  }),
);
