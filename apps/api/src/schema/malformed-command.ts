// MalformedCommand: a command intake refused and quarantined with why (silent-encoding-change: never silently).
import { FAILURE_CODES, type FailureCode } from '@postern/shared';
import { builder } from './builder.ts';
import { textFilter } from './filter-arguments.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

interface MalformedCommandRow {
  id: string;
  receivedAt: Date;
  channel: 'stream' | 'api' | 'smtp';
  streamEntryId: string | null;
  failureCode: FailureCode;
  failureDetail: string;
  schemaVersion: string | null;
  source: string | null;
  deliveryId: string | null;
  raw: string;
  cursorAt: string;
}

// Filters $1..$5 (null: not filtered on), then the keyset parameters $6..$10 (pagination.ts), on
// (received_at, id).
const MALFORMED_COMMANDS_SQL: KeysetStatements = keysetStatements(
  { list: 'malformedCommands', idType: 'bigint' },
  `
SELECT mc.id::text AS id, mc.received_at AS "receivedAt", mc.channel, mc.stream_entry_id AS "streamEntryId",
       mc.failure_code AS "failureCode", mc.failure_detail AS "failureDetail", mc.schema_version AS "schemaVersion",
       mc.source, mc.delivery_id AS "deliveryId", mc.raw,
       to_char(mc.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"
  FROM mail.malformed_commands mc
 WHERE ($1::text IS NULL OR mc.channel = $1::text)
   AND ($2::text IS NULL OR mc.failure_code = $2::text)
   AND ($3::text IS NULL OR mc.source = $3::text)
   AND ($4::timestamptz IS NULL OR mc.received_at >= $4::timestamptz)
   AND ($5::timestamptz IS NULL OR mc.received_at < $5::timestamptz)
   AND ($6::timestamptz IS NULL OR (mc.received_at, mc.id) > ($6::timestamptz, $7::bigint))
   AND ($8::timestamptz IS NULL OR (mc.received_at, mc.id) < ($8::timestamptz, $9::bigint))
 ORDER BY mc.received_at /*DIRECTION*/, mc.id /*DIRECTION*/
 LIMIT $10`,
);

const CommandChannelEnum = builder.enumType('CommandChannel', { values: ['stream', 'api', 'smtp'] as const });
const FailureCodeEnum = builder.enumType('CommandFailureCode', { values: FAILURE_CODES });

const MalformedCommandRef = builder.objectRef<MalformedCommandRow>('MalformedCommand');

MalformedCommandRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    receivedAt: t.expose('receivedAt', { type: 'DateTime' }),
    channel: t.field({ type: CommandChannelEnum, resolve: (row) => row.channel }),
    streamEntryId: t.exposeString('streamEntryId', { nullable: true }),
    failureCode: t.field({ type: FailureCodeEnum, resolve: (row) => row.failureCode }),
    failureDetail: t.exposeString('failureDetail'),
    schemaVersion: t.exposeString('schemaVersion', { nullable: true }),
    source: t.exposeString('source', { nullable: true }),
    deliveryId: t.exposeString('deliveryId', { nullable: true, description: 'As the command gave it (not verified).' }),
    // The raw command holds what the producer sent (a login code in template variables, a body):
    // seeing that something was refused (queue:read) does not mean reading it. Nullable so the
    // refusal is this field's null and a FORBIDDEN error, not the whole row.
    raw: t.exposeString('raw', {
      nullable: true,
      authScopes: { scope: 'commands:raw:read' },
      description: 'The command as received (truncated beyond 64 KiB). Needs `commands:raw:read`.',
    }),
  }),
});

const MalformedCommandFilter = builder.inputType('MalformedCommandFilter', {
  fields: (t) => ({
    channel: t.field({ type: CommandChannelEnum, required: false }),
    failureCode: t.field({ type: FailureCodeEnum, required: false }),
    source: t.string({ required: false }),
    receivedAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive.' }),
    receivedBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive.' }),
  }),
});

builder.queryFields((t) => ({
  malformedCommands: t.connection({
    type: MalformedCommandRef,
    authScopes: { scope: 'queue:read' },
    args: { filter: t.arg({ type: MalformedCommandFilter, required: false }) },
    resolve: (_root, args, context) => {
      const filter = args.filter;
      const filters = [
        filter?.channel ?? null,
        filter?.failureCode ?? null,
        textFilter(filter?.source, 'filter.source'),
        filter?.receivedAfter ?? null,
        filter?.receivedBefore ?? null,
      ];
      return keysetConnection(args, MALFORMED_COMMANDS_SQL, filters, async (text, values) => {
        const result = await context.db.query<MalformedCommandRow>(text, values);
        return result.rows;
      });
    },
  }),
}));
