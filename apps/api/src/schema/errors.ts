// Errors a client can act on. Validation problems are typed result objects (the errors plugin puts
// them in the field's result union), so a client switches on __typename instead of parsing strings.
// A missing scope is a GraphQL error with extensions.code FORBIDDEN and the scope it lacked.
import { isDiskFullDbError } from '@postern/shared';
import type { AuthFailure } from '@pothos/plugin-scope-auth';
import type { GraphQLResolveInfo } from 'graphql';
import { GraphQLError } from 'graphql';

export const VALIDATION_CODES = [
  'INVALID_ADDRESS',
  'INVALID_INPUT',
  'UNKNOWN_DOMAIN',
  'UNKNOWN_TEMPLATE',
  'MISSING_VARIABLE',
  'ALIAS_LOOP',
] as const;
export type ValidationCode = (typeof VALIDATION_CODES)[number];

/** The input cannot be accepted as given: `field` names the argument path, `message` says why. */
export class ValidationError extends Error {
  readonly field: string;
  readonly code: ValidationCode;
  constructor(field: string, code: ValidationCode, message: string) {
    super(message);
    this.name = 'ValidationError';
    this.field = field;
    this.code = code;
  }
}

/** The thing named does not exist (an id, an alias address, a suppression). */
export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** The request is well-formed but the current state says no: already exists, already sent, ... */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** The first scope named in a scope-auth failure: the one a token would need. */
export function requiredScopeOf(failure: AuthFailure): string | null {
  switch (failure.kind) {
    case 'AuthScope':
      return typeof failure.parameter === 'string' ? failure.parameter : null;
    case 'AnyAuthScopes':
    case 'AllAuthScopes':
      for (const inner of failure.failures) {
        const scope = requiredScopeOf(inner);
        if (scope) return scope;
      }
      return null;
    default:
      return null;
  }
}

export function forbiddenError(info: GraphQLResolveInfo, failure: AuthFailure): GraphQLError {
  const scope = requiredScopeOf(failure);
  const what = `${info.parentType.name}.${info.fieldName}`;
  return new GraphQLError(scope ? `${what} requires the "${scope}" scope` : `not allowed to use ${what}`, {
    extensions: { code: 'FORBIDDEN', requiredScope: scope },
  });
}

/**
 * The database could not take a request now (away, read-only, its disk full, a statement or lock
 * timeout: isRetryableDbError) as an error the caller can act on: HTTP 503 with extensions.code
 * SERVICE_UNAVAILABLE and a text that says to send the same request again. Unhandled, it was
 * INTERNAL_SERVER_ERROR "Unexpected error." in production, which reads as a bug of ours and gives a
 * service no reason to retry (e2e/faults/postgres-disk-full). A retry is safe: under the same
 * idempotencyKey it never makes a second delivery, whether or not this one was stored.
 */
export function databaseUnavailableError(error: unknown): GraphQLError {
  const why = isDiskFullDbError(error) ? "PostgreSQL's disk is full" : 'the database cannot take it now';
  return new GraphQLError(`${why}: send the same request again later (with the same idempotencyKey a retry never makes a second delivery)`, {
    extensions: { code: 'SERVICE_UNAVAILABLE', http: { status: 503 } },
  });
}
