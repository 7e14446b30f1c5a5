// MalformedCommand: a command intake refused and quarantined with why (silent-encoding-change: never silently).
// Read by the producer that sent it as well as by operators: a stream producer hears nothing back,
// so its own token (`deliveries:read`) lists its own producer's refusals, exactly as it lists its
// own deliveries (auth/producer-reach.ts); `queue:read` lists every producer's, and the rows whose
// producer could not be read.
import { FAILURE_CODES, type FailureCode, grantsScope } from '@postern/shared';
import { reachableRefusalSource, refusalsReach } from '../auth/producer-reach.ts';
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

// Filters $1..$6 (null: not filtered on), then the keyset parameters $7..$11 (pagination.ts), on
// (received_at, id). $3 is the source: the filter's, or the token's producer when it reads its own
// refusals alone, and then $6 is that producer too. A producer's page is read through
// malformed_commands_source_received_at_idx (source, received_at, id): in order, the cursor an
// Index Cond, nothing sorted (e2e/api/read-plans.e2e.test.ts). $6 keeps out of a producer's reach
// the stream entries that named its `api:<name>` producer: the stream refuses every `api:` source
// (an API token's own, which no stream producer may send as or put anything under the reads of),
// so such an entry is someone else's, an operator's to read. With the value bound the condition
// folds away for every other producer.
export const MALFORMED_COMMANDS_SQL: KeysetStatements = keysetStatements(
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
   AND ($6::text IS NULL OR mc.channel <> 'stream' OR left($6::text, 4) <> 'api:')
   AND ($7::timestamptz IS NULL OR (mc.received_at, mc.id) > ($7::timestamptz, $8::bigint))
   AND ($9::timestamptz IS NULL OR (mc.received_at, mc.id) < ($9::timestamptz, $10::bigint))
 ORDER BY mc.received_at /*DIRECTION*/, mc.id /*DIRECTION*/
 LIMIT $11`,
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
    // seeing that something was refused (queue:read, or deliveries:read for a producer's own) does
    // not mean reading it, as reading a delivery never reads its variables or body. With the scope,
    // a producer's token reads the raw of the rows its list reaches: its own producer's alone.
    // Nullable so the refusal is this field's null and a FORBIDDEN error, not the whole row.
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
    source: t.string({
      required: false,
      description: "A producer. A token without `queue:read` reads its own producer's alone: naming another is FORBIDDEN.",
    }),
    receivedAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive.' }),
    receivedBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive.' }),
  }),
});

builder.queryFields((t) => ({
  malformedCommands: t.connection({
    type: MalformedCommandRef,
    // queue:read reads every producer's; without it, deliveries:read reads the token's own
    // producer's (and is the scope a token with neither is told it lacks).
    authScopes: (_root, _args, context) => ({ scope: grantsScope(context.principal.scopes, 'queue:read') ? 'queue:read' : 'deliveries:read' }),
    description:
      "Commands Postern refused, oldest first. `queue:read`: every producer's; `deliveries:read` without it: the token's own producer's alone.",
    args: { filter: t.arg({ type: MalformedCommandFilter, required: false }) },
    resolve: (_root, args, context) => {
      const filter = args.filter;
      const filters = [
        filter?.channel ?? null,
        filter?.failureCode ?? null,
        reachableRefusalSource(context.principal, textFilter(filter?.source, 'filter.source'), 'filter.source'),
        filter?.receivedAfter ?? null,
        filter?.receivedBefore ?? null,
        refusalsReach(context.principal),
      ];
      return keysetConnection(args, MALFORMED_COMMANDS_SQL, filters, async (text, values) => {
        const result = await context.db.query<MalformedCommandRow>(text, values);
        return result.rows;
      });
    },
  }),
}));
