// The cost limit against the API's schema: a connection's rows are counted as the server serves
// them, whether its page size is written in, in a variable or left out; everywhere else the count
// is graphql-armor's cost-limit formula, number for number.
import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { type DocumentNode, type OperationDefinitionNode, parse, TypeInfo, ValidationContext, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../schema/index.ts';
import { PAGE_DEFAULT_SIZE, PAGE_MAX_SIZE } from '../schema/pagination.ts';
import { queryCost } from './query-cost.ts';

const OPTIONS = { maxCost: 5_000, defaultPageSize: PAGE_DEFAULT_SIZE, maxPageSize: PAGE_MAX_SIZE };

function costOf(query: string): number {
  const document: DocumentNode = parse(query);
  const context = new ValidationContext(schema, document, new TypeInfo(schema), () => {});
  const operation = document.definitions.find((definition): definition is OperationDefinitionNode => definition.kind === 'OperationDefinition');
  if (!operation) throw new Error('no operation');
  return queryCost(context, operation.selectionSet, schema.getRootType(operation.operation) ?? null, OPTIONS);
}

/** graphql-armor's count of the same document. */
function armorCostOf(query: string): number {
  let cost = Number.NaN;
  validate(schema, parse(query), [costLimitRule({ maxCost: Number.POSITIVE_INFINITY, onAccept: [(_context, { n }) => (cost = n)] })]);
  return cost;
}

const WIDE = 'id status recipient attempts { id smtpText workerId } deadLetter { reason lastAttempt { smtpText } delivery { id recipient } }';

describe('query cost', () => {
  it.each([
    ['a literal page size within the maximum', `{ deliveries(first: 50) { edges { node { ${WIDE} } } pageInfo { hasNextPage } } }`],
    ['nested objects and lists that are not connections', '{ queueStats { depth { status count } oldestDueAgeMs } workers { workerId state } }'],
    ['inline fragments on a union', 'mutation { cancelDelivery(id: "x") { __typename ... on CancelDeliverySuccess { data { id } } ... on Error { message } } }'],
    ['a named fragment spread twice', `query { a: delivery(id: "x") { ...D } b: delivery(id: "y") { ...D } } fragment D on Delivery { ${WIDE} }`],
    ['the largest page written in', `{ deadLetters(last: 100) { edges { cursor node { id delivery { ${WIDE} } } } } }`],
  ])('%s: the same count as graphql-armor', (_name, query) => {
    expect(costOf(query)).toBe(armorCostOf(query));
  });

  it('counts a page size in a variable as the largest page, where graphql-armor counted one row', () => {
    const literal = costOf(`{ deliveries(first: 100) { edges { node { ${WIDE} } } } }`);
    const variable = `query($n: Int) { deliveries(first: $n) { edges { node { ${WIDE} } } } }`;
    expect(costOf(variable)).toBe(literal);
    expect(armorCostOf(variable) * 100).toBeCloseTo(literal);
  });

  it('counts a page size left out as the default page', () => {
    const omitted = costOf(`{ deliveries { edges { node { ${WIDE} } } } }`);
    expect(omitted).toBe(costOf(`{ deliveries(first: ${PAGE_DEFAULT_SIZE}) { edges { node { ${WIDE} } } } }`));
    expect(omitted).toBeGreaterThan(armorCostOf(`{ deliveries { edges { node { ${WIDE} } } } }`));
  });

  it('counts a page size beyond the maximum as the maximum the server serves, and none below one row', () => {
    const largest = costOf('{ domains(first: 100) { edges { node { id name } } } }');
    expect(costOf('{ domains(first: 150) { edges { node { id name } } } }')).toBe(largest);
    expect(costOf('{ domains(first: 2147483647) { edges { node { id name } } } }')).toBe(largest);
    expect(costOf('{ domains(first: 0) { edges { node { id name } } } }')).toBe(costOf('{ domains(first: 1) { edges { node { id name } } } }'));
    expect(costOf('{ domains(first: -5) { edges { node { id name } } } }')).toBeGreaterThan(0);
  });

  it('ends on a fragment spread inside itself, and counts fragments of fragments once each', () => {
    expect(Number.isFinite(costOf('{ delivery(id: "x") { ...A } } fragment A on Delivery { id deadLetter { delivery { ...A } } }'))).toBe(true);
    // 30 fragments, each spreading the next twice: 2^30 spreads if each were walked again.
    const chain = Array.from({ length: 30 }, (_, index) => `fragment F${index} on Delivery { id ${index < 29 ? `a: deadLetter { delivery { ...F${index + 1} } } b: deadLetter { delivery { ...F${index + 1} } }` : ''} }`).join(' ');
    expect(costOf(`{ delivery(id: "x") { ...F0 } } ${chain}`)).toBeGreaterThan(OPTIONS.maxCost);
  });
});
