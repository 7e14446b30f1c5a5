import { GraphQLError, Kind, type ValueNode } from 'graphql';
import { GraphQLDateTime } from 'graphql-scalars';
import { builder } from './builder.ts';

// Input: strictly an RFC 3339 date-time with an offset, through graphql-scalars (measured before:
// `new Date()` read 2025-02-30T00:00:00Z as 2 March, and took values without an offset in the
// server's time zone and bare dates). Refused with BAD_USER_INPUT and the value. Output stays an
// ISO string in UTC with milliseconds, as before.
const RFC3339_EXAMPLE = '2025-01-31T12:00:00Z or 2025-01-31T13:00:00+01:00';

function refusal(shown: unknown): GraphQLError {
  return new GraphQLError(`DateTime must be an RFC 3339 date-time with an offset (e.g. ${RFC3339_EXAMPLE}); got ${JSON.stringify(shown)}`, {
    extensions: { code: 'BAD_USER_INPUT' },
  });
}

function strictDateTime(read: () => unknown, shown: unknown): Date {
  try {
    return read() as Date;
  } catch {
    throw refusal(shown);
  }
}

builder.scalarType('DateTime', {
  description: `An instant: RFC 3339 date-time with an offset (e.g. ${RFC3339_EXAMPLE}). Output in UTC with milliseconds.`,
  serialize: (value) => (value instanceof Date ? value.toISOString() : new Date(value).toISOString()),
  // Only strings: a number (epoch?) or a Date object is not an RFC 3339 value.
  parseValue: (value) => {
    if (typeof value !== 'string') throw refusal(value);
    return strictDateTime(() => GraphQLDateTime.parseValue(value), value);
  },
  parseLiteral: (ast: ValueNode) =>
    strictDateTime(() => GraphQLDateTime.parseLiteral(ast, undefined), ast.kind === Kind.STRING ? ast.value : ast.kind),
});

builder.scalarType('JSON', {
  description: 'Any JSON value (template variables).',
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (ast) => {
    // Literal JSON in a query is rare; variables are the intended way. Objects of scalars suffice.
    const read = (node: typeof ast): unknown => {
      switch (node.kind) {
        case Kind.STRING:
        case Kind.BOOLEAN:
          return node.value;
        case Kind.INT:
        case Kind.FLOAT:
          return Number(node.value);
        case Kind.NULL:
          return null;
        case Kind.LIST:
          return node.values.map(read);
        case Kind.OBJECT:
          return Object.fromEntries(node.fields.map((field) => [field.name.value, read(field.value)]));
        default:
          throw new GraphQLError('JSON literals cannot use variables inside; pass the whole value as a variable');
      }
    };
    return read(ast);
  },
});
