// What every resolver receives. The principal was established by the HTTP layer before GraphQL ran
// (no token or a revoked one never reaches here: it got a 401).
import type { ApiScope, Logger, Pool, SecretsKey } from '@postern/shared';
import type { SendEmailIntake } from './operations/send-email-intake.ts';
import type { Loaders } from './schema/loaders.ts';

export interface Principal {
  tokenId: string;
  tokenName: string;
  scopes: readonly ApiScope[];
  /** The one `source` this token may send as (mail.api_tokens.producer). */
  producer: string;
}

export interface ApiContext {
  db: Pool;
  principal: Principal;
  logger: Logger;
  intake: SendEmailIntake;
  /** MAIL_SECRETS_KEY, which seals new DKIM keys; null when unset. */
  secretsKey: SecretsKey | null;
  /** The caller's W3C traceparent header, normalised; null when it sent none or an invalid one
   *  (W3C: ignored, a new trace starts). */
  callerTraceparent: string | null;
  /** This request's batching loaders (schema/loaders.ts); made new for every request. */
  loaders: Loaders;
}
