import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../context.ts';
import { producerSource } from './producer-source.ts';

const billing: Principal = { tokenId: '1', tokenName: 'billing-2', scopes: ['send'], producer: 'billing' };

describe('the source a token sends under', () => {
  it('is the token producer, whether omitted or named', () => {
    expect(producerSource(billing, undefined, 'input.source')).toBe('billing');
    expect(producerSource(billing, null, 'input.source')).toBe('billing');
    expect(producerSource(billing, 'billing', 'input.source')).toBe('billing');
  });

  it('is never another producer, whatever the scopes (admin too): FORBIDDEN naming the field', () => {
    const admin: Principal = { ...billing, scopes: ['admin'] };
    for (const principal of [billing, admin]) {
      let thrown: unknown;
      try {
        producerSource(principal, 'crm', 'input.source');
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(GraphQLError);
      expect((thrown as GraphQLError).extensions).toEqual({ code: 'FORBIDDEN', field: 'input.source', producer: 'billing' });
      expect((thrown as GraphQLError).message).toContain('input.source');
    }
  });
});
