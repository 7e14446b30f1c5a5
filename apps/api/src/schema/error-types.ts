// The GraphQL side of schema/errors.ts: an Error interface and one object type per error class.
import { builder } from './builder.ts';
import { ConflictError, NotFoundError, VALIDATION_CODES, ValidationError } from './errors.ts';

export const ErrorInterface = builder.interfaceRef<Error>('Error').implement({
  fields: (t) => ({ message: t.exposeString('message') }),
});

const ValidationCodeEnum = builder.enumType('ValidationCode', { values: VALIDATION_CODES });

builder.objectType(ValidationError, {
  name: 'ValidationError',
  description: 'The input was refused; `field` is the argument path, `message` says what was wrong.',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    field: t.exposeString('field'),
    code: t.field({ type: ValidationCodeEnum, resolve: (error) => error.code }),
  }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  interfaces: [ErrorInterface],
  fields: () => ({}),
});

builder.objectType(ConflictError, {
  name: 'ConflictError',
  description: 'Well-formed, but the current state refuses it (already exists, already sent, ...).',
  interfaces: [ErrorInterface],
  fields: () => ({}),
});

export const INPUT_ERRORS = [ValidationError, NotFoundError, ConflictError];
