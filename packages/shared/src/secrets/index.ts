export { openSecret, SealedSecretError, sealSecret } from './sealed-secret.ts';
export { parseSecretsKey, SECRETS_KEY_BYTES, type SecretsKey, SecretsKeyMissingError } from './secrets-key.ts';
