// Arguments a query cannot run with (a malformed cursor, a domain that is no domain) are GraphQL
// errors with extensions.code BAD_USER_INPUT and a message naming the problem: never an
// INTERNAL_SERVER_ERROR, which would tell the client the fault is ours. Mutations keep their typed
// ValidationError results (schema/errors.ts); queries have no result union to carry one.
import { GraphQLError } from 'graphql';

export function badUserInput(message: string, argument?: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...(argument ? { argument } : {}) } });
}
