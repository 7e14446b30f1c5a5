// A routed relay's password at rest: sealed with MAIL_SECRETS_KEY (secrets/sealed-secret.ts) and
// bound to its route's domain and username, so a sealed password copied onto another route, or
// kept under a changed username, does not open. The API seals it when a route is set; the engine
// opens it when it connects to the route's relay. It is never logged and never in an answer.

import { openSecret, SealedSecretError, sealSecret } from '../secrets/sealed-secret.ts';
import { keysTried, type SecretsKey } from '../secrets/secrets-key.ts';
import type { SealedRouteAuth } from './route-rules.ts';

/** No configured key opens a route's password: another key, or the row was altered. `keys` names
 *  the keys tried (keysTried). */
export class SealedRouteAuthError extends Error {
  constructor(routeDomain: string, why: string, keys = 'MAIL_SECRETS_KEY') {
    super(`the credentials of the route for ${routeDomain} cannot be opened with ${keys}: ${why}`);
    this.name = 'SealedRouteAuthError';
  }
}

/** What a route's sealed password is bound to (additional authenticated data). */
export function routePasswordBoundTo(routeDomain: string, username: string): string {
  return `postern-route-auth-v1:${routeDomain}:${username}`;
}

export function sealRoutePassword(secretsKey: SecretsKey, routeDomain: string, username: string, password: string): Buffer {
  return sealSecret(secretsKey, routePasswordBoundTo(routeDomain, username), password);
}

/** The password of a route's credentials, or SealedRouteAuthError. */
export function openRoutePassword(secretsKey: SecretsKey | null, routeDomain: string, auth: SealedRouteAuth): string {
  if (!secretsKey) throw new SealedRouteAuthError(routeDomain, 'MAIL_SECRETS_KEY is not set');
  try {
    return openSecret(secretsKey, routePasswordBoundTo(routeDomain, auth.username), auth.passwordSealed);
  } catch (error) {
    if (error instanceof SealedSecretError) throw new SealedRouteAuthError(routeDomain, error.message, keysTried(secretsKey));
    throw error;
  }
}
