// Alias: an address (or a domain's catch-all) and where its mail goes. Every write goes through the
// shared alias code, the very code whose tables the edge reads on each RCPT: a change made here is
// what the next RCPT sees, on every edge, with nothing to regenerate (stale-alias-table, docs/incidents.md).
import {
  ALIAS_KINDS,
  type Alias,
  createAlias,
  deleteAlias,
  fillMark,
  getAlias,
  InvalidAddressError,
  normalizeDomain,
  setAliasEnabled,
  setAliasTargets,
  withTransaction,
} from '@postern/shared';
import { withAliasErrors } from './alias-errors.ts';
import { badUserInput } from './bad-user-input.ts';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { NotFoundError, ValidationError } from './errors.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

interface AliasRow extends Alias {
  createdAt: Date;
  updatedAt: Date;
  cursorAt: string;
}

/** AliasRow's columns of `mail.aliases al` joined to `mail.domains dm`, for every statement that returns aliases. */
const ALIAS_COLUMNS = `al.id::text AS id, dm.name AS domain, al.local_part AS "localPart", al.kind, al.enabled, al.description,
       ARRAY(SELECT t.address FROM mail.alias_targets t WHERE t.alias_id = al.id ORDER BY t.address) AS targets,
       al.created_at AS "createdAt", al.updated_at AS "updatedAt",
       to_char(al.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"`;

function withAliasColumns(template: string): string {
  return fillMark(template, 'ALIAS_COLUMNS', ALIAS_COLUMNS);
}

// $1 the domain (null: every domain), then the keyset parameters $2..$6 (pagination.ts).
const ALIASES_SQL: KeysetStatements = keysetStatements(
  { list: 'aliases', idType: 'bigint' },
  withAliasColumns(`
SELECT /*ALIAS_COLUMNS*/
  FROM mail.aliases al JOIN mail.domains dm ON dm.id = al.domain_id
 WHERE ($1::text IS NULL OR dm.name = $1::text)
   AND ($2::timestamptz IS NULL OR (al.created_at, al.id) > ($2::timestamptz, $3::bigint))
   AND ($4::timestamptz IS NULL OR (al.created_at, al.id) < ($4::timestamptz, $5::bigint))
 ORDER BY al.created_at /*DIRECTION*/, al.id /*DIRECTION*/
 LIMIT $6`),
);

const ALIAS_BY_ID_SQL = withAliasColumns(`
SELECT /*ALIAS_COLUMNS*/
  FROM mail.aliases al JOIN mail.domains dm ON dm.id = al.domain_id
 WHERE al.id = $1::bigint`);

export const AliasKindEnum = builder.enumType('AliasKind', {
  description: 'forward: relay to its target(s); list: fan out to every member.',
  values: ALIAS_KINDS,
});

export const AliasRef = builder.objectRef<AliasRow>('Alias');

AliasRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    domain: t.exposeString('domain'),
    localPart: t.exposeString('localPart', { nullable: true, description: 'null: the catch-all of the domain.' }),
    address: t.string({
      description: 'local@domain, or *@domain for the catch-all.',
      resolve: (alias) => `${alias.localPart ?? '*'}@${alias.domain}`,
    }),
    kind: t.field({ type: AliasKindEnum, resolve: (alias) => alias.kind }),
    enabled: t.exposeBoolean('enabled'),
    description: t.exposeString('description', { nullable: true }),
    targets: t.exposeStringList('targets', { description: 'Normalised addresses, sorted.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

async function aliasRow(db: Parameters<typeof getAlias>[0], id: string): Promise<AliasRow | null> {
  const result = await db.query<AliasRow>(ALIAS_BY_ID_SQL, [id]);
  return result.rows[0] ?? null;
}

function aliasId(id: string | number): string {
  const text = String(id);
  if (!/^[0-9]{1,18}$/.test(text)) throw new ValidationError('id', 'INVALID_INPUT', `alias id "${text}" is not an alias id`);
  return text;
}

builder.queryFields((t) => ({
  aliases: t.connection({
    type: AliasRef,
    authScopes: { scope: 'aliases:read' },
    args: { domain: t.arg.string({ required: false, description: 'Only the aliases of this domain.' }) },
    resolve: (_root, args, context) => {
      let domain: string | null = null;
      if (args.domain) {
        try {
          domain = normalizeDomain(args.domain);
        } catch (error) {
          if (error instanceof InvalidAddressError) throw badUserInput(error.message, 'domain');
          throw error;
        }
      }
      return keysetConnection(args, ALIASES_SQL, [domain], async (text, values) => {
        const result = await context.db.query<AliasRow>(text, values);
        return result.rows;
      });
    },
  }),
  alias: t.field({
    type: AliasRef,
    nullable: true,
    authScopes: { scope: 'aliases:read' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, context) => (/^[0-9]{1,18}$/.test(String(args.id)) ? aliasRow(context.db, String(args.id)) : null),
  }),
}));

const CreateAliasInput = builder.inputType('CreateAliasInput', {
  fields: (t) => ({
    domain: t.string({ required: true, description: 'An existing domain (createDomain).' }),
    localPart: t.string({ required: false, description: 'Omit or null for the catch-all of the domain.' }),
    kind: t.field({ type: AliasKindEnum, required: false, defaultValue: 'forward' }),
    targets: t.stringList({ required: true, description: 'Where mail goes: at least one address, at most 1,000 (repeated ones counted).' }),
    enabled: t.boolean({ required: false, defaultValue: true }),
    description: t.string({ required: false }),
  }),
});

const UpdateAliasInput = builder.inputType('UpdateAliasInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    enabled: t.boolean({ required: false, description: 'A disabled alias is refused with 550 on the next RCPT.' }),
    targets: t.stringList({ required: false, description: 'Replaces every target (at most 1,000).' }),
  }),
});

const DeletedAlias = builder.objectRef<{ id: string }>('DeletedAlias').implement({ fields: (t) => ({ id: t.exposeID('id') }) });

builder.mutationFields((t) => ({
  createAlias: t.field({
    type: AliasRef,
    authScopes: { scope: 'aliases:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'CreateAliasSuccess' }, union: { name: 'CreateAliasResult' } },
    args: { input: t.arg({ type: CreateAliasInput, required: true }) },
    resolve: (_root, { input }, context) =>
      withAliasErrors(async () => {
        const alias = await createAlias(context.db, {
          domain: input.domain,
          localPart: input.localPart ?? null,
          kind: input.kind ?? 'forward',
          targets: input.targets,
          enabled: input.enabled ?? true,
          description: input.description ?? null,
        });
        return (await aliasRow(context.db, alias.id)) as AliasRow;
      }),
  }),
  updateAlias: t.field({
    type: AliasRef,
    authScopes: { scope: 'aliases:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'UpdateAliasSuccess' }, union: { name: 'UpdateAliasResult' } },
    args: { input: t.arg({ type: UpdateAliasInput, required: true }) },
    resolve: (_root, { input }, context) =>
      withAliasErrors(async () => {
        const id = aliasId(input.id);
        // Both changes or neither: an RCPT never sees new targets on a still-old enabled flag.
        const found = await withTransaction(context.db, async (client) => {
          let alias = await getAlias(client, { id });
          if (!alias) return false;
          if (input.targets) alias = await setAliasTargets(client, { id }, input.targets);
          if (input.enabled !== null && input.enabled !== undefined) alias = await setAliasEnabled(client, { id }, input.enabled);
          return alias !== null;
        });
        if (!found) throw new NotFoundError(`no alias with id ${id}`);
        return (await aliasRow(context.db, id)) as AliasRow;
      }),
  }),
  deleteAlias: t.field({
    type: DeletedAlias,
    authScopes: { scope: 'aliases:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'DeleteAliasSuccess' }, union: { name: 'DeleteAliasResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, context) =>
      withAliasErrors(async () => {
        const id = aliasId(args.id);
        if (!(await deleteAlias(context.db, { id }))) throw new NotFoundError(`no alias with id ${id}`);
        return { id };
      }),
  }),
}));
