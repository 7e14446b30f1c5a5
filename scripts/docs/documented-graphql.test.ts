// Every GraphQL operation README.md and docs/**/*.md give (documented-code.ts says which forms are
// taken) is one the API accepts: it parses and validates with the API's own parse and validate
// (createApiYoga's: graphql-js's rules against the schema apps/api builds, plus the token, depth,
// alias and cost limits it adds), and the variables of a request body coerce to the types the
// operation declares. A failure names the doc's file:line and the API's message. Nothing is executed:
// the database and the intake are stand-ins that throw if touched.
//
// Placeholders are strings, written `"<what>"` (`\"<what>\"` inside a JSON body) or `"..."`, where the
// schema takes any string (String, ID, JSON): they are validated as those strings, as the value the
// operator puts there will be. Anywhere else graphql-js refuses them (a DateTime that does not parse,
// a string where an enum or an input object belongs) and the doc must give a real example value, as
// it must for `{...}`, which is no GraphQL at all.
import { createLogger, createMetricsRegistry, type Pool } from '@postern/shared';
import { type DocumentNode, type GraphQLError, getVariableValues, Kind } from 'graphql';
import { describe, expect, it } from 'vitest';
import { createApiYoga } from '../../apps/api/src/http/create-yoga.ts';
import { createApiMetrics } from '../../apps/api/src/http/operation-metrics.ts';
import type { SendEmailIntake } from '../../apps/api/src/operations/send-email-intake.ts';
import { type DocumentedGraphql, documentedGraphql, graphqlIn } from './documented-code.ts';

const untouchable = new Proxy(
  {},
  {
    get: () => {
      throw new Error('validating a documented operation must not reach the database or the intake');
    },
  },
);
const api = createApiYoga({
  db: untouchable as Pool,
  logger: createLogger('documented-graphql', 'silent'),
  intake: untouchable as SendEmailIntake,
  secretsKey: null,
  metrics: createApiMetrics(createMetricsRegistry('api')),
  production: false,
  introspection: true,
  graphiql: false,
  tracing: false,
});
const { parse, validate, schema } = api.getEnveloped({ principal: null, callerTraceparent: null });

interface Request {
  query: string;
  variables?: Record<string, unknown>;
}

/** What is wrong with one documented operation, each as `file:line: message`; none when it is valid. */
function problemsOf(documented: DocumentedGraphql): string[] {
  const at = (error: GraphQLError | Error) => {
    const offset = ('locations' in error ? error.locations?.[0]?.line : undefined) ?? 1;
    return `${documented.file}:${documented.line + offset - 1}: ${error.message}`;
  };
  let request: Request;
  try {
    request = documented.form === 'request' ? (JSON.parse(documented.text) as Request) : { query: documented.text };
  } catch (error) {
    return [at(new Error(`not a JSON request body: ${(error as Error).message}`))];
  }
  let document: DocumentNode;
  try {
    document = parse(request.query);
    // The API's limits throw their refusal rather than return it.
    const invalid = validate(schema, document);
    if (invalid.length > 0) return invalid.map(at);
  } catch (error) {
    return [at(error as GraphQLError)];
  }
  if (documented.form === 'document') return [];
  // A request is sent as written: its variables must fit what its operation declares.
  return document.definitions.flatMap((definition) =>
    definition.kind === Kind.OPERATION_DEFINITION
      ? (getVariableValues(schema, definition.variableDefinitions ?? [], request.variables ?? {}).errors ?? []).map(at)
      : [],
  );
}

describe('GraphQL in README.md and docs/**/*.md', () => {
  const operations = documentedGraphql();

  it('is found in every form the docs use', () => {
    expect(operations.filter((operation) => operation.form === 'request').length).toBeGreaterThan(30);
    expect(operations.some((operation) => operation.form === 'document')).toBe(true);
    expect(operations.some((operation) => operation.file === 'docs/runbook.md')).toBe(true);
  });

  it('is valid against the API schema, variables included', () => {
    expect(operations.flatMap(problemsOf)).toEqual([]);
  });

  it('fails, with file:line, on a field, an argument or a variable the schema does not have, and past the API\'s limits', () => {
    const doc = [
      '# title',
      "gql '{\"query\":\"{ queueStats { depth { status count } oldestDueAge } }\"}'",
      '```graphql',
      'query {',
      '  deliveries(first: 1, filter: {state: [queued]}) { edges { cursor } }',
      '}',
      '```',
      `gql '{"query":"query($id: ID!) { delivery(id: $id) { id } }","variables":{"ident":"<uuid>"}}'`,
      `gql '{"query":"{ delivery(id: \\"<uuid>\\") { id recipient } }"}'`,
      "gql '{\"query\":\"{ deadLetters { edges { node { delivery { deadLetter { delivery { deadLetter { delivery { id } } } } } } } } }\"}'",
    ].join('\n');
    expect(graphqlIn('doc.md', doc).flatMap(problemsOf)).toEqual([
      'doc.md:2: Cannot query field "oldestDueAge" on type "QueueStats". Did you mean "oldestDueAgeMs"?',
      'doc.md:5: Field "state" is not defined by type "DeliveryFilter". Did you mean "status"?',
      'doc.md:8: Variable "$id" of required type "ID!" was not provided.',
      'doc.md:10: Syntax Error: Query depth limit of 8 exceeded, found 9.',
    ]);
  });
});
