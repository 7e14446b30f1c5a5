export { type DkimDnsRecord, dkimDnsRecord, dkimRecordName } from './dns-record.ts';
export { DKIM_KEY_TAGS, DKIM_KEY_TYPES, type DkimKeyPair, type DkimKeyType, generateDkimKeyPair } from './key-pair.ts';
export {
  createDkimKey,
  DKIM_KEY_COLUMNS,
  DKIM_KEY_STATUSES,
  DkimKeyConflictError,
  DkimKeyInputError,
  DkimKeyNotFoundError,
  type DkimKeyRecord,
  type DkimKeyStatus,
  type DkimRotation,
  dkimDomain,
  dkimSelector,
  type NewDkimKey,
  retireDkimKey,
  rotateDkimKey,
} from './manage-dkim-keys.ts';
export { type KeyName, openPrivateKey, SealedKeyError, sealPrivateKey } from './sealed-key.ts';
export { checkSecretsKey, type DkimKeysOpened, loadSigningKey, type SigningKey } from './signing-keys.ts';
