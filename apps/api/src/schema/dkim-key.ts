// DKIM keys per domain: list them, create one, rotate to a new one, retire one. Every answer shows
// the TXT record to publish (or, once retired, to remove); no answer ever holds a private key,
// sealed or not — no field reads it (packages/shared/src/dkim/). Scopes: dkim:read, dkim:write.
import {
  createDkimKey,
  DKIM_KEY_COLUMNS,
  DKIM_KEY_STATUSES,
  DKIM_KEY_TYPES,
  DkimKeyConflictError,
  DkimKeyInputError,
  DkimKeyNotFoundError,
  type DkimKeyRecord,
  type DkimRotation,
  dkimDnsRecord,
  dkimDomain,
  fillMark,
  retireDkimKey,
  rotateDkimKey,
  SecretsKeyMissingError,
} from '@postern/shared';
import { GraphQLError } from 'graphql';
import { badUserInput } from './bad-user-input.ts';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

interface DkimKeyRow extends DkimKeyRecord {
  cursorAt: string;
}

// $1 the domain (null: every domain), then the keyset parameters $2..$6 (pagination.ts).
const DKIM_KEYS_SQL: KeysetStatements = keysetStatements(
  { list: 'dkimKeys', idType: 'bigint' },
  fillMark(
    `
SELECT /*DKIM_KEY_COLUMNS*/,
       to_char(dk.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"
  FROM mail.dkim_keys dk
 WHERE ($1::text IS NULL OR dk.domain = $1::text)
   AND ($2::timestamptz IS NULL OR (dk.created_at, dk.id) > ($2::timestamptz, $3::bigint))
   AND ($4::timestamptz IS NULL OR (dk.created_at, dk.id) < ($4::timestamptz, $5::bigint))
 ORDER BY dk.created_at /*DIRECTION*/, dk.id /*DIRECTION*/
 LIMIT $6`,
    'DKIM_KEY_COLUMNS',
    DKIM_KEY_COLUMNS,
  ),
);

const DkimKeyTypeEnum = builder.enumType('DkimKeyType', {
  values: DKIM_KEY_TYPES,
  description: 'rsa2048: RSA, 2048 bits (rsa-sha256; every verifier knows it). ed25519: Ed25519 (ed25519-sha256, RFC 8463; not every verifier knows it yet).',
});
const DkimKeyStatusEnum = builder.enumType('DkimKeyStatus', {
  values: DKIM_KEY_STATUSES,
  description:
    'pending: publish its record, then rotate to it. active: signs the domain\'s mail. superseded: replaced, signs no more; keep its record until mail signed with it has arrived, then retire it. retired: private key destroyed; remove its record.',
});

type DnsRecord = ReturnType<typeof dkimDnsRecord>;

const DkimDnsRecordRef = builder.objectRef<DnsRecord>('DkimDnsRecord').implement({
  description: 'The TXT record of a DKIM key, as it goes into DNS.',
  fields: (t) => ({
    name: t.exposeString('name', { description: '<selector>._domainkey.<domain>' }),
    type: t.exposeString('type', { description: 'Always TXT.' }),
    value: t.exposeString('value', { description: 'The record text as verifiers read it: v=DKIM1; k=...; p=...' }),
    zoneFileLine: t.exposeString('zoneFileLine', {
      description: 'One zone-file line; values longer than 255 characters are split into several quoted strings (RFC 1035 3.3.14).',
    }),
  }),
});

export const DkimKeyRef = builder.objectRef<DkimKeyRecord>('DkimKey');

DkimKeyRef.implement({
  description: 'A DKIM key of a domain. Its private half is never shown.',
  fields: (t) => ({
    id: t.exposeID('id'),
    domain: t.exposeString('domain', { description: 'ASCII (IDNs as punycode), lower case.' }),
    selector: t.exposeString('selector'),
    keyType: t.field({ type: DkimKeyTypeEnum, resolve: (key) => key.keyType }),
    status: t.field({ type: DkimKeyStatusEnum, resolve: (key) => key.status }),
    dnsRecord: t.field({ type: DkimDnsRecordRef, resolve: (key) => dkimDnsRecord(key) }),
    published: t.boolean({
      description: 'Whether the record belongs in DNS: true until the key is retired, then false (remove it).',
      resolve: (key) => key.status !== 'retired',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    activatedAt: t.expose('activatedAt', { type: 'DateTime', nullable: true }),
    supersededAt: t.expose('supersededAt', { type: 'DateTime', nullable: true }),
    retiredAt: t.expose('retiredAt', { type: 'DateTime', nullable: true }),
  }),
});

const DkimRotationRef = builder.objectRef<DkimRotation>('DkimRotation').implement({
  fields: (t) => ({
    active: t.field({ type: DkimKeyRef, description: 'Signs from now on.', resolve: (rotation) => rotation.active }),
    superseded: t.field({
      type: DkimKeyRef,
      description: 'Signs no more; keep its record published until it is retired.',
      resolve: (rotation) => rotation.superseded,
    }),
  }),
});

/** The shared code's refusals as the API's typed errors; a missing MAIL_SECRETS_KEY is the
 *  operator's to fix, not the client's: a GraphQL error with code NOT_CONFIGURED. */
async function withDkimErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DkimKeyInputError) {
      throw new ValidationError(error.field, error.field === 'domain' ? 'INVALID_ADDRESS' : 'INVALID_INPUT', error.message);
    }
    if (error instanceof DkimKeyConflictError) throw new ConflictError(error.message);
    if (error instanceof DkimKeyNotFoundError) throw new NotFoundError(error.message);
    if (error instanceof SecretsKeyMissingError) throw new GraphQLError(error.message, { extensions: { code: 'NOT_CONFIGURED' } });
    throw error;
  }
}

builder.queryFields((t) => ({
  dkimKeys: t.connection({
    type: DkimKeyRef,
    authScopes: { scope: 'dkim:read' },
    description: 'DKIM keys, oldest first, retired ones included.',
    args: { domain: t.arg.string({ required: false, description: 'Only this domain\'s keys.' }) },
    resolve: (_root, args, context) => {
      let domain: string | null = null;
      if (args.domain !== null && args.domain !== undefined) {
        try {
          domain = dkimDomain(args.domain);
        } catch (error) {
          if (error instanceof DkimKeyInputError) throw badUserInput(error.message, 'domain');
          throw error;
        }
      }
      return keysetConnection(args, DKIM_KEYS_SQL, [domain], async (text, values) => {
        const result = await context.db.query<DkimKeyRow>(text, values);
        return result.rows;
      });
    },
  }),
}));

const CreateDkimKeyInput = builder.inputType('CreateDkimKeyInput', {
  fields: (t) => ({
    domain: t.string({ required: true, description: 'The From domain to sign for, e.g. example.com; IDNs are stored as punycode.' }),
    selector: t.string({ required: true, description: 'DNS labels, e.g. "pst2025"; never reused for the domain.' }),
    keyType: t.field({ type: DkimKeyTypeEnum, required: false, defaultValue: 'rsa2048' }),
  }),
});

const RotateDkimKeyInput = builder.inputType('RotateDkimKeyInput', {
  fields: (t) => ({
    domain: t.string({ required: true }),
    selector: t.string({ required: true, description: 'A pending key of the domain, or a new selector (a key is created).' }),
    keyType: t.field({ type: DkimKeyTypeEnum, required: false, description: 'For a new key; default: the replaced key\'s type.' }),
  }),
});

const RetireDkimKeyInput = builder.inputType('RetireDkimKeyInput', {
  fields: (t) => ({
    domain: t.string({ required: true }),
    selector: t.string({ required: true }),
  }),
});

builder.mutationFields((t) => ({
  createDkimKey: t.field({
    type: DkimKeyRef,
    authScopes: { scope: 'dkim:write' },
    description: 'A new key: active when the domain has none (it signs at once), otherwise pending (publish its record, then rotateDkimKey to it).',
    errors: { types: INPUT_ERRORS, result: { name: 'CreateDkimKeySuccess' }, union: { name: 'CreateDkimKeyResult' } },
    args: { input: t.arg({ type: CreateDkimKeyInput, required: true }) },
    resolve: (_root, { input }, context) =>
      withDkimErrors(() =>
        createDkimKey(context.db, context.secretsKey, { domain: input.domain, selector: input.selector, keyType: input.keyType ?? 'rsa2048' }),
      ),
  }),
  rotateDkimKey: t.field({
    type: DkimRotationRef,
    authScopes: { scope: 'dkim:write' },
    description: "The key with `selector` becomes the domain's active key; the active one is superseded (kept until retired).",
    errors: { types: INPUT_ERRORS, result: { name: 'RotateDkimKeySuccess' }, union: { name: 'RotateDkimKeyResult' } },
    args: { input: t.arg({ type: RotateDkimKeyInput, required: true }) },
    resolve: (_root, { input }, context) =>
      withDkimErrors(() =>
        rotateDkimKey(context.db, context.secretsKey, { domain: input.domain, selector: input.selector, keyType: input.keyType ?? null }),
      ),
  }),
  retireDkimKey: t.field({
    type: DkimKeyRef,
    authScopes: { scope: 'dkim:write' },
    description: 'The key signs no more and its private half is destroyed; remove its record from DNS. Retiring the active key leaves the domain unsigned.',
    errors: { types: INPUT_ERRORS, result: { name: 'RetireDkimKeySuccess' }, union: { name: 'RetireDkimKeyResult' } },
    args: { input: t.arg({ type: RetireDkimKeyInput, required: true }) },
    resolve: (_root, { input }, context) => withDkimErrors(() => retireDkimKey(context.db, { domain: input.domain, selector: input.selector })),
  }),
}));
