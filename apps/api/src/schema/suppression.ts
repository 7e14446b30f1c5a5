// Suppression: an address the engine will not send to (checked before every send).
import { fillMark, InvalidAddressError, normalizeAddress, textProblem } from '@postern/shared';
import { badUserInput } from './bad-user-input.ts';
import { builder } from './builder.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

const SUPPRESSION_REASONS = ['hard_bounce', 'complaint', 'unsubscribe', 'manual'] as const;

interface SuppressionRow {
  id: string;
  address: string;
  reason: (typeof SUPPRESSION_REASONS)[number];
  note: string | null;
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  cursorAt: string;
}

/** SuppressionRow's columns of `mail.suppressions sp`, for every statement that returns suppressions. */
const SUPPRESSION_COLUMNS = `sp.id::text AS id, sp.address, sp.reason, sp.note, sp.created_by AS "createdBy",
       sp.created_at AS "createdAt", sp.expires_at AS "expiresAt",
       to_char(sp.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"`;

function withSuppressionColumns(template: string): string {
  return fillMark(template, 'SUPPRESSION_COLUMNS', SUPPRESSION_COLUMNS);
}

// $1 the reason (null: any), then the keyset parameters $2..$6 (pagination.ts).
const SUPPRESSIONS_SQL: KeysetStatements = keysetStatements(
  { list: 'suppressions', idType: 'bigint' },
  withSuppressionColumns(`
SELECT /*SUPPRESSION_COLUMNS*/
  FROM mail.suppressions sp
 WHERE ($1::text IS NULL OR sp.reason = $1::text)
   AND ($2::timestamptz IS NULL OR (sp.created_at, sp.id) > ($2::timestamptz, $3::bigint))
   AND ($4::timestamptz IS NULL OR (sp.created_at, sp.id) < ($4::timestamptz, $5::bigint))
 ORDER BY sp.created_at /*DIRECTION*/, sp.id /*DIRECTION*/
 LIMIT $6`),
);

const SUPPRESSION_BY_ADDRESS_SQL = withSuppressionColumns(`
SELECT /*SUPPRESSION_COLUMNS*/
  FROM mail.suppressions sp
 WHERE sp.address = $1`);

const ADD_SUPPRESSION_SQL = withSuppressionColumns(`
INSERT INTO mail.suppressions AS sp (address, reason, note, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (address) DO NOTHING
RETURNING /*SUPPRESSION_COLUMNS*/`);

const SuppressionReasonEnum = builder.enumType('SuppressionReason', { values: SUPPRESSION_REASONS });

const SuppressionRef = builder.objectRef<SuppressionRow>('Suppression');

SuppressionRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    address: t.exposeString('address'),
    reason: t.field({ type: SuppressionReasonEnum, resolve: (row) => row.reason }),
    note: t.exposeString('note', { nullable: true }),
    createdBy: t.exposeString('createdBy', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true, description: 'null: never expires.' }),
  }),
});

function suppressedAddress(field: string, input: string): string {
  try {
    return normalizeAddress(input).address;
  } catch (error) {
    if (error instanceof InvalidAddressError) throw new ValidationError(field, 'INVALID_ADDRESS', error.message);
    throw error;
  }
}

builder.queryFields((t) => ({
  suppressions: t.connection({
    type: SuppressionRef,
    authScopes: { scope: 'suppressions:read' },
    args: { reason: t.arg({ type: SuppressionReasonEnum, required: false }) },
    resolve: (_root, args, context) => {
      return keysetConnection(args, SUPPRESSIONS_SQL, [args.reason ?? null], async (text, values) => {
        const result = await context.db.query<SuppressionRow>(text, values);
        return result.rows;
      });
    },
  }),
  suppression: t.field({
    type: SuppressionRef,
    nullable: true,
    authScopes: { scope: 'suppressions:read' },
    args: { address: t.arg.string({ required: true }) },
    resolve: async (_root, args, context) => {
      let address: string;
      try {
        address = normalizeAddress(args.address).address;
      } catch (error) {
        if (error instanceof InvalidAddressError) throw badUserInput(error.message, 'address');
        throw error;
      }
      const result = await context.db.query<SuppressionRow>(SUPPRESSION_BY_ADDRESS_SQL, [address]);
      return result.rows[0] ?? null;
    },
  }),
}));

const AddSuppressionInput = builder.inputType('AddSuppressionInput', {
  fields: (t) => ({
    address: t.string({ required: true }),
    reason: t.field({ type: SuppressionReasonEnum, required: false, defaultValue: 'manual' }),
    note: t.string({ required: false }),
    expiresAt: t.field({ type: 'DateTime', required: false, description: 'Omit for a permanent suppression.' }),
  }),
});

const RemovedSuppression = builder
  .objectRef<{ address: string }>('RemovedSuppression')
  .implement({ fields: (t) => ({ address: t.exposeString('address') }) });

builder.mutationFields((t) => ({
  addSuppression: t.field({
    type: SuppressionRef,
    authScopes: { scope: 'suppressions:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'AddSuppressionSuccess' }, union: { name: 'AddSuppressionResult' } },
    args: { input: t.arg({ type: AddSuppressionInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const address = suppressedAddress('address', input.address);
      // Refused, not altered: PostgreSQL text cannot hold a NUL, and storing one would fail inside it (INTERNAL_SERVER_ERROR).
      const noteProblem = input.note ? textProblem(input.note, 1000) : null;
      if (noteProblem) throw new ValidationError('note', 'INVALID_INPUT', `note ${noteProblem}`);
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
        throw new ValidationError('expiresAt', 'INVALID_INPUT', 'expiresAt must be in the future');
      }
      const result = await context.db.query<SuppressionRow>(ADD_SUPPRESSION_SQL, [
        address,
        input.reason ?? 'manual',
        input.note ?? null,
        `token:${context.principal.tokenName}`,
        input.expiresAt ?? null,
      ]);
      const row = result.rows[0];
      if (!row) throw new ConflictError(`${address} is already suppressed`);
      return row;
    },
  }),
  removeSuppression: t.field({
    type: RemovedSuppression,
    authScopes: { scope: 'suppressions:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'RemoveSuppressionSuccess' }, union: { name: 'RemoveSuppressionResult' } },
    args: { address: t.arg.string({ required: true }) },
    resolve: async (_root, args, context) => {
      const address = suppressedAddress('address', args.address);
      const result = await context.db.query('DELETE FROM mail.suppressions WHERE address = $1', [address]);
      if ((result.rowCount ?? 0) === 0) throw new NotFoundError(`${address} is not suppressed`);
      return { address };
    },
  }),
}));
