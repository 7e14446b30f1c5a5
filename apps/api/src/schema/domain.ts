// Domain: a mail domain Postern answers for. Created through the shared alias code (the same code
// the edge reads with), so the edge knows it on the next RCPT.
import { createDomain, normalizeDomain, type Queryable } from '@postern/shared';
import { withAliasErrors } from './alias-errors.ts';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { cursorAtSql, keysetConnection, SqlConditions } from './pagination.ts';

export interface DomainRow {
  id: string;
  name: string;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  cursorAt: string;
}

export const DOMAIN_COLUMNS = `dm.id::text AS id, dm.name, dm.enabled, dm.created_at AS "createdAt",
  dm.updated_at AS "updatedAt", ${cursorAtSql('dm.created_at')} AS "cursorAt"`;

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
      keysetConnection(args, ['dm.created_at', 'dm.id'], 'bigint', new SqlConditions(), async (page) => {
        const result = await context.db.query<DomainRow>(
          `SELECT ${DOMAIN_COLUMNS} FROM mail.domains dm ${page.where}
            ORDER BY dm.created_at ${page.direction}, dm.id ${page.direction} LIMIT ${page.limit}`,
          page.values,
        );
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
      } catch {
        return null;
      }
      const result = await context.db.query<DomainRow>(`SELECT ${DOMAIN_COLUMNS} FROM mail.domains dm WHERE dm.name = $1`, [name]);
      return result.rows[0] ?? null;
    },
  }),
}));

async function domainById(db: Queryable, id: string): Promise<DomainRow> {
  const result = await db.query<DomainRow>(`SELECT ${DOMAIN_COLUMNS} FROM mail.domains dm WHERE dm.id = $1::bigint`, [id]);
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
