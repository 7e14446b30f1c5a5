import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { secretsKeyOf } from '../secrets/secrets-key.ts';
import { openRoutePassword, SealedRouteAuthError, sealRoutePassword } from './route-credentials.ts';

describe("a route's sealed password", () => {
  const key = secretsKeyOf(randomBytes(32));
  const auth = { username: 'u', passwordSealed: sealRoutePassword(key, 'relay.example.test', 'u', 'pw') };

  it('opens with the key it was sealed with, also as the previous key during a rotation', () => {
    expect(openRoutePassword(key, 'relay.example.test', auth)).toBe('pw');
    expect(openRoutePassword(secretsKeyOf(randomBytes(32), key.current), 'relay.example.test', auth)).toBe('pw');
  });

  it('names the keys it was tried with when none opens it', () => {
    expect(() => openRoutePassword(secretsKeyOf(randomBytes(32)), 'relay.example.test', auth)).toThrow(
      /^the credentials of the route for relay\.example\.test cannot be opened with MAIL_SECRETS_KEY: /,
    );
    expect(() => openRoutePassword(secretsKeyOf(randomBytes(32), randomBytes(32)), 'relay.example.test', auth)).toThrow(
      /^the credentials of the route for relay\.example\.test cannot be opened with MAIL_SECRETS_KEY or MAIL_SECRETS_KEY_PREVIOUS: /,
    );
    expect(() => openRoutePassword(null, 'relay.example.test', auth)).toThrow(SealedRouteAuthError);
  });
});
