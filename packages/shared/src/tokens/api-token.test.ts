import { describe, expect, it } from 'vitest';
import { defaultProducer, grantsScope, hashApiToken, isApiScope, looksLikeApiToken, mintApiToken, producerProblem, producerReach } from './api-token.ts';

describe('API tokens', () => {
  it('mints a recognisable 32-byte token and stores only its sha256 hex', () => {
    const { token, hash } = mintApiToken();
    expect(token).toMatch(/^pst_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token.slice(4), 'base64url')).toHaveLength(32);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).toBe(hashApiToken(token));
    expect(hash).not.toContain(token.slice(4));
    expect(looksLikeApiToken(token)).toBe(true);
  });

  it('never mints the same token twice', () => {
    const tokens = new Set(Array.from({ length: 200 }, () => mintApiToken().token));
    expect(tokens.size).toBe(200);
  });

  it('refuses strings that are not tokens before any lookup', () => {
    expect(looksLikeApiToken('pst_short')).toBe(false);
    expect(looksLikeApiToken(`xyz_${'a'.repeat(43)}`)).toBe(false);
  });

  it('admin implies every scope; other scopes imply only themselves', () => {
    expect(grantsScope(['admin'], 'aliases:write')).toBe(true);
    expect(grantsScope(['aliases:read'], 'aliases:write')).toBe(false);
    expect(grantsScope(['aliases:write'], 'aliases:write')).toBe(true);
    expect(grantsScope([], 'send')).toBe(false);
    expect(isApiScope('queue:read')).toBe(true);
    expect(isApiScope('queue:write')).toBe(false);
  });

  it('the nested-field scopes are scopes of their own, implied only by admin', () => {
    for (const scope of ['attempts:read', 'content:read', 'commands:raw:read'] as const) {
      expect(isApiScope(scope)).toBe(true);
      expect(grantsScope(['admin'], scope)).toBe(true);
      expect(grantsScope(['deliveries:read', 'queue:read', 'send'], scope)).toBe(false);
    }
  });

  it("deliveries scopes reach the token's own producer; their :any forms and admin reach every producer's", () => {
    expect(producerReach(['deliveries:read'], 'deliveries:read', 'billing')).toBe('billing');
    expect(producerReach(['deliveries:read', 'deliveries:write:any'], 'deliveries:read', 'billing')).toBe('billing');
    expect(producerReach(['deliveries:read:any'], 'deliveries:read', 'billing')).toBeNull();
    expect(producerReach(['admin'], 'deliveries:write', 'billing')).toBeNull();
    // The :any form grants the plain scope (the field's check); the plain one never the :any form.
    expect(grantsScope(['deliveries:read:any'], 'deliveries:read')).toBe(true);
    expect(grantsScope(['deliveries:write:any'], 'deliveries:read')).toBe(false);
    expect(grantsScope(['deliveries:read'], 'deliveries:read:any')).toBe(false);
    expect(isApiScope('deliveries:write:any')).toBe(true);
    expect(isApiScope('aliases:read:any')).toBe(false);
  });

  it('a token sends as its own "api:<name>" unless given a producer; some producers are not for tokens', () => {
    expect(defaultProducer('billing-svc')).toBe('api:billing-svc');
    expect(producerProblem('billing-svc', 'billing')).toBeNull();
    expect(producerProblem('billing-svc', 'api:billing-svc')).toBeNull();
    expect(producerProblem('billing-svc', 'api:crm-svc')).toMatch(/reserved for the token of that name/);
    expect(producerProblem('x', 'smtp')).toMatch(/reserved/);
    expect(producerProblem('x', 'postern-dsn')).toMatch(/reserved/);
    expect(producerProblem('x', '')).toMatch(/must be/);
    expect(producerProblem('x', 'bad producer')).toMatch(/must be/);
    expect(producerProblem('x', 'a'.repeat(201))).toMatch(/must be/);
  });
});
