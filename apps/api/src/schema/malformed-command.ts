// MalformedCommand: a command intake refused and quarantined with why (seed 003: never silently).
import { FAILURE_CODES } from '@postern/shared';
import { builder } from './builder.ts';
import { cursorAtSql, keysetConnection, SqlConditions } from './pagination.ts';

interface MalformedCommandRow {
  id: string;
  receivedAt: Date;
  channel: 'stream' | 'api' | 'smtp';
  streamEntryId: string | null;
  failureCode: (typeof FAILURE_CODES)[number];
  failureDetail: string;
  schemaVersion: string | null;
  source: string | null;
  deliveryId: string | null;
  raw: string;
  cursorAt: string;
}

const MALFORMED_COLUMNS = `mc.id::text AS id, mc.received_at AS "receivedAt", mc.channel, mc.stream_entry_id AS "streamEntryId",
  mc.failure_code AS "failureCode", mc.failure_detail AS "failureDetail", mc.schema_version AS "schemaVersion",
  mc.source, mc.delivery_id AS "deliveryId", mc.raw, ${cursorAtSql('mc.received_at')} AS "cursorAt"`;

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
    raw: t.exposeString('raw', { description: 'The command as received (truncated beyond 64 KiB).' }),
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
      const conditions = new SqlConditions();
      const filter = args.filter;
      if (filter?.channel) conditions.add('mc.channel = $?', filter.channel);
      if (filter?.failureCode) conditions.add('mc.failure_code = $?', filter.failureCode);
      if (filter?.source) conditions.add('mc.source = $?', filter.source);
      if (filter?.receivedAfter) conditions.add('mc.received_at >= $?', filter.receivedAfter);
      if (filter?.receivedBefore) conditions.add('mc.received_at < $?', filter.receivedBefore);
      return keysetConnection(args, ['mc.received_at', 'mc.id'], 'bigint', conditions, async (page) => {
        const result = await context.db.query<MalformedCommandRow>(
          `SELECT ${MALFORMED_COLUMNS} FROM mail.malformed_commands mc ${page.where}
            ORDER BY mc.received_at ${page.direction}, mc.id ${page.direction} LIMIT ${page.limit}`,
          page.values,
        );
        return result.rows;
      });
    },
  }),
}));
