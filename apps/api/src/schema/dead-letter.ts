// DeadLetter: a delivery that exhausted the retry ladder. Exactly one per dead-lettered delivery;
// a requeue marks it (requeuedAt/By) and puts the delivery back in the queue.
import { type AttemptRow, ATTEMPT_COLUMNS, AttemptRef } from './attempt.ts';
import { builder } from './builder.ts';
import { deliveryById, DeliveryRef } from './delivery.ts';
import { cursorAtSql, keysetConnection, SqlConditions } from './pagination.ts';

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

export const DEAD_LETTER_COLUMNS = `dd.id::text AS id, dd.delivery_id::text AS "deliveryId", dd.reason,
  dd.last_attempt_id::text AS "lastAttemptId", dd.created_at AS "createdAt", dd.requeued_at AS "requeuedAt",
  dd.requeued_by AS "requeuedBy", ${cursorAtSql('dd.created_at')} AS "cursorAt"`;

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
        const delivery = await deliveryById(context.db, deadLetter.deliveryId);
        if (!delivery) throw new Error(`dead letter ${deadLetter.id} without its delivery`);
        return delivery;
      },
    }),
    lastAttempt: t.field({
      type: AttemptRef,
      nullable: true,
      resolve: async (deadLetter, _args, context) => {
        if (!deadLetter.lastAttemptId) return null;
        const result = await context.db.query<AttemptRow>(`SELECT ${ATTEMPT_COLUMNS} FROM mail.attempts at WHERE at.id = $1::bigint`, [
          deadLetter.lastAttemptId,
        ]);
        return result.rows[0] ?? null;
      },
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

/** Conditions on mail.dead_letters `dd` joined to mail.deliveries `dl`. */
export function deadLetterConditions(filter: DeadLetterFilterShape | null | undefined): SqlConditions {
  const conditions = new SqlConditions();
  if (!filter) return conditions;
  if (filter.requeued === true) conditions.add('dd.requeued_at IS NOT NULL');
  if (filter.requeued === false) conditions.add('dd.requeued_at IS NULL');
  if (filter.recipient) conditions.add('dl.recipient = lower($?)', filter.recipient.trim());
  if (filter.source) conditions.add('dl.source = $?', filter.source);
  if (filter.createdAfter) conditions.add('dd.created_at >= $?', filter.createdAfter);
  if (filter.createdBefore) conditions.add('dd.created_at < $?', filter.createdBefore);
  return conditions;
}

builder.queryFields((t) => ({
  deadLetters: t.connection({
    type: DeadLetterRef,
    authScopes: { scope: 'deliveries:read' },
    args: { filter: t.arg({ type: DeadLetterFilter, required: false }) },
    resolve: (_root, args, context) =>
      keysetConnection(args, ['dd.created_at', 'dd.id'], 'bigint', deadLetterConditions(args.filter), async (page) => {
        const result = await context.db.query<DeadLetterRow>(
          `SELECT ${DEAD_LETTER_COLUMNS} FROM mail.dead_letters dd JOIN mail.deliveries dl ON dl.id = dd.delivery_id
            ${page.where} ORDER BY dd.created_at ${page.direction}, dd.id ${page.direction} LIMIT ${page.limit}`,
          page.values,
        );
        return result.rows;
      }),
  }),
}));
