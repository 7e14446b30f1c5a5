// The API's own yoga (createApiYoga), asked with misspellings: where introspection is off, no error
// names a field, type, argument or enum value of the schema that the client did not write itself.
// Every document here is refused before any resolver runs, so the database is never asked.
import { createLogger, createMetricsRegistry, type Pool } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import type { SendEmailIntake } from '../operations/send-email-intake.ts';
import { createApiYoga } from './create-yoga.ts';
import { withoutSuggestions } from './hidden-suggestions.ts';
import { createApiMetrics } from './operation-metrics.ts';

const untouchable = new Proxy({}, {
  get: () => {
    throw new Error('no resolver should run');
  },
});

function yogaFor(production: boolean) {
  return createApiYoga({
    db: untouchable as Pool,
    logger: createLogger('api-test', 'silent'),
    intake: untouchable as SendEmailIntake,
    secretsKey: null,
    metrics: createApiMetrics(createMetricsRegistry('api')),
    production,
    introspection: !production,
    graphiql: false,
    tracing: false,
  });
}

const principal = { tokenId: '1', tokenName: 'svc', scopes: ['deliveries:read', 'send'] as const, producer: 'billing' };

async function errorsOf(yoga: ReturnType<typeof yogaFor>, query: string, variables?: Record<string, unknown>): Promise<string[]> {
  const response = await yoga.fetch(
    'http://api.test/graphql',
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) },
    { principal: { ...principal, scopes: [...principal.scopes] }, callerTraceparent: null },
  );
  const body = (await response.json()) as { errors?: { message: string }[] };
  return (body.errors ?? []).map((error) => error.message);
}

// Each misspelling, and the name graphql-js would suggest for it.
const MISSPELT: { query: string; variables?: Record<string, unknown>; suggests: string }[] = [
  { query: '{ deliverie { id } }', suggests: '"deliveries"' },
  { query: '{ deliveries(first: 1) { edges { node { recipent } } } }', suggests: '"recipient"' },
  { query: '{ deliveries(firs: 1) { edges { cursor } } }', suggests: '"first"' },
  { query: '{ deliveries(filter: { sourc: "x" }) { edges { cursor } } }', suggests: '"source"' },
  { query: '{ delivery(id: "x") { ... on Deliver { id } } }', suggests: '"Delivery"' },
  { query: '{ deliveries(filter: { status: [queud] }) { edges { cursor } } }', suggests: 'the enum value "queued"' },
  { query: 'mutation { sendEmail(input: { to: "a@b.test", idempotencyKey: "k" }) { data } }', suggests: 'inline fragment on "SendEmailSuccess"' },
  // Coerced during execution, not validation.
  { query: 'query($s: [DeliveryStatus!]) { deliveries(filter: { status: $s }) { edges { cursor } } }', variables: { s: ['queud'] }, suggests: '"queued"' },
  { query: 'query($f: DeliveryFilter) { deliveries(filter: $f) { edges { cursor } } }', variables: { f: { sourc: 'x' } }, suggests: '"source"' },
];

describe('schema suggestions in error messages', () => {
  const development = yogaFor(false);
  const production = yogaFor(true);

  it.each(MISSPELT)('development suggests, production does not: $query', async ({ query, variables, suggests }) => {
    const shown = await errorsOf(development, query, variables);
    expect(shown.join('\n')).toContain('Did you mean');
    expect(shown.join('\n')).toContain(suggests);
    const hidden = await errorsOf(production, query, variables);
    expect(hidden.length).toBe(shown.length);
    expect(hidden.join('\n')).not.toMatch(/Did you mean/);
    expect(hidden.join('\n')).not.toContain(suggests);
    // The refusal itself is still said: only the suggestion is gone.
    expect(hidden).toEqual(shown.map(withoutSuggestions));
  });

  it('cuts every form graphql-js makes, and only the suggestion', () => {
    expect(withoutSuggestions('Cannot query field "x" on type "Query". Did you mean "a", "b", "c", "d", or "e"?')).toBe('Cannot query field "x" on type "Query".');
    expect(withoutSuggestions('Unknown type "Deliver". Did you mean "Delivery" or "DeliveryFilter"?')).toBe('Unknown type "Deliver".');
    expect(withoutSuggestions('Variable "$s" got invalid value "Did you mean"; Value "Did you mean" does not exist in "E" enum.')).toBe(
      'Variable "$s" got invalid value "Did you mean"; Value "Did you mean" does not exist in "E" enum.',
    );
  });
});
