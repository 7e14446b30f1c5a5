export { checkSecretsAtStart, dkimKeysOpenedMessage } from './check-at-start.ts';
export { logSecretsRotation, type ResealResult, resealSecrets, SEALED_COLUMNS, type SealedSecretsStatus, sealedSecretsStatus, sealedWithPrevious } from './reseal-secrets.ts';
export { openSecret, openSecretFrom, SealedSecretError, sealSecret } from './sealed-secret.ts';
export { keysTried, parseSecretsKey, SECRETS_KEY_BYTES, type SecretsKey, SecretsKeyMissingError, secretsKeyOf } from './secrets-key.ts';
