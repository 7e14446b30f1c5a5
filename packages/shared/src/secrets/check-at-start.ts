// What the API and the engine check of MAIL_SECRETS_KEY before they serve: every DKIM key that may
// sign opens (else the process refuses to start: a key it cannot open would hold back its domain's
// mail), the log says which key opened them, and while MAIL_SECRETS_KEY_PREVIOUS is set, what is
// left of the rotation (docs/deploy.md, "Rotating MAIL_SECRETS_KEY").
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { checkSecretsKey, type DkimKeysOpened } from '../dkim/signing-keys.ts';
import type { Logger } from '../logging/logger.ts';
import { logSecretsRotation } from './reseal-secrets.ts';
import type { SecretsKey } from './secrets-key.ts';

/** The start's line about the DKIM keys, or null when there are none. During a rotation it names
 *  the previous key when that is what opened some of them: an operator reads this line to learn
 *  whether the reseal is still to do. */
export function dkimKeysOpenedMessage(opened: DkimKeysOpened): string | null {
  if (opened.current + opened.previous === 0) return null;
  if (opened.previous === 0) return 'DKIM keys open with MAIL_SECRETS_KEY';
  if (opened.current === 0) return 'DKIM keys open with MAIL_SECRETS_KEY_PREVIOUS (none yet with MAIL_SECRETS_KEY)';
  return `DKIM keys open: ${opened.current} with MAIL_SECRETS_KEY, ${opened.previous} only with MAIL_SECRETS_KEY_PREVIOUS`;
}

/** Throws SecretsKeyMissingError or SealedKeyError when a DKIM key that may sign does not open. */
export async function checkSecretsAtStart(db: Queryable, secretsKey: SecretsKey | null, logger: Logger): Promise<void> {
  const opened = await checkSecretsKey(db, secretsKey);
  const message = dkimKeysOpenedMessage(opened);
  if (message !== null) logger.info({ keys: opened.current + opened.previous, ...opened }, message);
  await logSecretsRotation(db, secretsKey, logger);
}
