// Domain: a mail domain Postern answers for. Created through the shared alias code (the same code
// the edge reads with), so the edge knows it on the next RCPT.
import { createDomain, fillMark, InvalidAddressError, normalizeDomain, type Queryable } from '@postern/shared';
import { withAliasErrors } from './alias-errors.ts';
import { badUserInput } from './bad-user-input.ts';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

export interface DomainRow {
  id: string;
  name: string;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  cursorAt: string;
}

/** DomainRow's columns of `mail.domains dm`, for every statement that returns domains. */
const DOMAIN_COLUMNS = `dm.id::text AS id, dm.name, dm.enabled, dm.created_at AS "createdAt", dm.updated_at AS "updatedAt",
       to_char(dm.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"`;

function withDomainColumns(template: string): string {
  return fillMark(template, 'DOMAIN_COLUMNS', DOMAIN_COLUMNS);
}

// No filters: the keyset parameters are $1..$5 (pagination.ts).
const DOMAINS_SQL: KeysetStatements = keysetStatements(
  { list: 'domains', idType: 'bigint' },
  withDomainColumns(`
SELECT /*DOMAIN_COLUMNS*/
  FROM mail.domains dm
 WHERE ($1::timestamptz IS NULL OR (dm.created_at, dm.id) > ($1::timestamptz, $2::bigint))
   AND ($3::timestamptz IS NULL OR (dm.created_at, dm.id) < ($3::timestamptz, $4::bigint))
 ORDER BY dm.created_at /*DIRECTION*/, dm.id /*DIRECTION*/
 LIMIT $5`),
);

const DOMAIN_BY_NAME_SQL = withDomainColumns(`
SELECT /*DOMAIN_COLUMNS*/
  FROM mail.domains dm
 WHERE dm.name = $1`);

const DOMAIN_BY_ID_SQL = withDomainColumns(`
SELECT /*DOMAIN_COLUMNS*/
  FROM mail.domains dm
 WHERE dm.id = $1::bigint`);

export const DomainRef = builder.objectRef<DomainRow>('Domain');

DomainRef.implement({
  description: 'A domain whose addresses are resolved through the alias tables.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name', { description: 'ASCII (IDNs as punycode), lower case.' }),
    enabled: t.exposeBoolean('enabled'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryFields((t) => ({
  domains: t.connection({
    type: DomainRef,
    authScopes: { scope: 'domains:read' },
    resolve: (_root, args, context) =>
      keysetConnection(args, DOMAINS_SQL, [], async (text, values) => {
        const result = await context.db.query<DomainRow>(text, values);
        return result.rows;
      }),
  }),
  domain: t.field({
    type: DomainRef,
    nullable: true,
    authScopes: { scope: 'domains:read' },
    args: { name: t.arg.string({ required: true }) },
    resolve: async (_root, args, context) => {
      let name: string;
      try {
        name = normalizeDomain(args.name);
      } catch (error) {
        if (error instanceof InvalidAddressError) throw badUserInput(error.message, 'name');
        throw error;
      }
      const result = await context.db.query<DomainRow>(DOMAIN_BY_NAME_SQL, [name]);
      return result.rows[0] ?? null;
    },
  }),
}));

async function domainById(db: Queryable, id: string): Promise<DomainRow> {
  const result = await db.query<DomainRow>(DOMAIN_BY_ID_SQL, [id]);
  return result.rows[0] as DomainRow;
}

builder.mutationField('createDomain', (t) =>
  t.field({
    type: DomainRef,
    authScopes: { scope: 'domains:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'CreateDomainSuccess' }, union: { name: 'CreateDomainResult' } },
    args: {
      name: t.arg.string({ required: true, description: 'e.g. example.com; IDNs are stored as punycode.' }),
      enabled: t.arg.boolean({ required: false, defaultValue: true }),
    },
    resolve: (_root, args, context) =>
      withAliasErrors(async () => {
        const domain = await createDomain(context.db, args.name, { enabled: args.enabled ?? true });
        return domainById(context.db, domain.id);
      }),
  }),
);
