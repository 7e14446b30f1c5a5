// DeadLetter: a delivery that exhausted the retry ladder. Exactly one per dead-lettered delivery;
// a requeue marks it (requeuedAt/By) and puts the delivery back in the queue.
import { type DeadLetterFilterValues, deadLetterFilterParams, fillMark, type ProducerScope, withDeadLetterFilter } from '@postern/shared';
import { reachableSource } from '../auth/producer-reach.ts';
import type { Principal } from '../context.ts';
import { AttemptRef } from './attempt.ts';
import { builder } from './builder.ts';
import { DeliveryRef } from './delivery.ts';
import { recipientFilter, textFilter } from './filter-arguments.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

export interface DeadLetterRow {
  id: string;
  deliveryId: string;
  reason: string;
  lastAttemptId: string | null;
  createdAt: Date;
  requeuedAt: Date | null;
  requeuedBy: string | null;
  cursorAt: string;
}

/** DeadLetterRow's columns of `mail.dead_letters dd`, for every statement that returns dead letters. */
const DEAD_LETTER_COLUMNS = `dd.id::text AS id, dd.delivery_id::text AS "deliveryId", dd.reason,
       dd.last_attempt_id::text AS "lastAttemptId", dd.created_at AS "createdAt", dd.requeued_at AS "requeuedAt",
       dd.requeued_by AS "requeuedBy",
       to_char(dd.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"`;

/** `template` with DEAD_LETTER_COLUMNS where it says `/*DEAD_LETTER_COLUMNS*\/` (once). */
export function withDeadLetterColumns(template: string): string {
  return fillMark(template, 'DEAD_LETTER_COLUMNS', DEAD_LETTER_COLUMNS);
}

export const DeadLetterRef = builder.objectRef<DeadLetterRow>('DeadLetter');

DeadLetterRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    reason: t.exposeString('reason'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    requeuedAt: t.expose('requeuedAt', { type: 'DateTime', nullable: true }),
    requeuedBy: t.exposeString('requeuedBy', { nullable: true, description: 'The API token that requeued it.' }),
    delivery: t.field({
      type: DeliveryRef,
      resolve: async (deadLetter, _args, context) => {
        const delivery = await context.loaders.deliveryById.load(deadLetter.deliveryId);
        if (!delivery) throw new Error(`dead letter ${deadLetter.id} without its delivery`);
        return delivery;
      },
    }),
    lastAttempt: t.field({
      type: AttemptRef,
      nullable: true,
      authScopes: { scope: 'attempts:read' },
      description: 'Needs `attempts:read`.',
      resolve: (deadLetter, _args, context) =>
        deadLetter.lastAttemptId ? context.loaders.attemptById.load(deadLetter.lastAttemptId) : null,
    }),
  }),
});

export const DeadLetterFilter = builder.inputType('DeadLetterFilter', {
  fields: (t) => ({
    requeued: t.boolean({ required: false, description: 'true: only requeued ones; false: only those still waiting.' }),
    recipient: t.string({ required: false }),
    source: t.string({ required: false }),
    createdAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive.' }),
    createdBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive.' }),
  }),
});

export interface DeadLetterFilterShape {
  requeued?: boolean | null;
  recipient?: string | null;
  source?: string | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}

/**
 * The filter as given, checked (an address in its normal form, text PostgreSQL can compare), for
 * the statements that select dead letters by it: the list here (`deliveries:read`) and
 * requeueDeadLetter (`deliveries:write`). Its source is the token's producer when the token reaches
 * only its own deliveries with that scope (auth/producer-reach.ts). The predicate itself is the
 * delivery lifecycle's (packages/shared/src/lifecycle/dead-letter-filter.ts).
 */
export function deadLetterFilter(filter: DeadLetterFilterShape | null | undefined, principal: Principal, scope: ProducerScope): DeadLetterFilterValues {
  return {
    requeued: filter?.requeued ?? null,
    recipient: recipientFilter(filter?.recipient),
    source: reachableSource(principal, scope, textFilter(filter?.source, 'filter.source'), 'filter.source'),
    createdAfter: filter?.createdAfter ?? null,
    createdBefore: filter?.createdBefore ?? null,
  };
}

// Filters $1..$5 (deadLetterFilterParams), then the keyset parameters $6..$10 (pagination.ts).
const DEAD_LETTERS_SQL: KeysetStatements = keysetStatements(
  { list: 'deadLetters', idType: 'bigint' },
  withDeadLetterFilter(withDeadLetterColumns(`
SELECT /*DEAD_LETTER_COLUMNS*/
  FROM mail.dead_letters dd JOIN mail.deliveries dl ON dl.id = dd.delivery_id
 WHERE /*DEAD_LETTER_FILTER*/
   AND ($6::timestamptz IS NULL OR (dd.created_at, dd.id) > ($6::timestamptz, $7::bigint))
   AND ($8::timestamptz IS NULL OR (dd.created_at, dd.id) < ($8::timestamptz, $9::bigint))
 ORDER BY dd.created_at /*DIRECTION*/, dd.id /*DIRECTION*/
 LIMIT $10`)),
);

builder.queryFields((t) => ({
  deadLetters: t.connection({
    type: DeadLetterRef,
    authScopes: { scope: 'deliveries:read' },
    args: { filter: t.arg({ type: DeadLetterFilter, required: false }) },
    resolve: (_root, args, context) =>
      keysetConnection(args, DEAD_LETTERS_SQL, deadLetterFilterParams(deadLetterFilter(args.filter, context.principal, 'deliveries:read')), async (text, values) => {
        const result = await context.db.query<DeadLetterRow>(text, values);
        return result.rows;
      }),
  }),
}));
