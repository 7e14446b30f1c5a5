import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { operationLabel } from './operation-metrics.ts';

const first = (source: string) => {
  const definition = parse(source).definitions[0];
  if (definition?.kind !== 'OperationDefinition') throw new Error('not an operation');
  return definition;
};

describe('operationLabel', () => {
  it('names operations by their root fields, not by client-chosen names', () => {
    expect(operationLabel(first('query WhateverTheClientCalls { deliveries { edges { cursor } } }'))).toBe('query:deliveries');
    expect(operationLabel(first('mutation { b: sendEmail(input: {}) { __typename } a: sendEmail(input: {}) { __typename } }'))).toBe('mutation:sendEmail');
    expect(operationLabel(first('{ queueStats { depth { count } } deliveries { edges { cursor } } }'))).toBe('query:deliveries+queueStats');
  });

  it('keeps the label set bounded for operations selecting many root fields', () => {
    expect(operationLabel(first('{ a { x } b { x } c { x } d { x } }'))).toBe('query:a+b+c+more');
    expect(operationLabel(undefined)).toBe('unknown');
  });
});
