// requeueDeadLetter: put dead-lettered deliveries back in the queue, due now. One by delivery id, or
// every match of a filter up to a cap (a typo in a filter must not requeue a month of mail at once).
// Each delivery moves in one guarded UPDATE (status = 'dead_letter'), and its dead-letter row is
// marked in the same statement; two operators requeueing together requeue each delivery once.
// attempt_count is kept: the engine numbers attempts from it, and the attempts table is unique on
// (delivery_id, attempt_number).
import { builder } from './builder.ts';
import { type DeadLetterFilterShape, DeadLetterFilter, deadLetterFilterParams } from './dead-letter.ts';
import { DeliveryRef, type DeliveryRow, deliveryById, isUuid, logDeliveryChanges, withDeliveryColumns } from './delivery.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';

export const REQUEUE_MAX = 1_000;
const REQUEUE_DEFAULT_MAX = 100;

// $1..$5 the dead-letter filter (deadLetterFilterParams), $6 one delivery's id (null: any),
// $7 how many at most, $8 who requeues.
const REQUEUE_SQL = withDeliveryColumns(`
WITH target AS (
  SELECT dd.id AS dead_letter_id, dl.id AS delivery_id
    FROM mail.dead_letters dd JOIN mail.deliveries dl ON dl.id = dd.delivery_id
   WHERE ($1::boolean IS NULL OR (dd.requeued_at IS NOT NULL) = $1::boolean)
     AND ($2::text IS NULL OR dl.recipient = lower($2::text))
     AND ($3::text IS NULL OR dl.source = $3::text)
     AND ($4::timestamptz IS NULL OR dd.created_at >= $4::timestamptz)
     AND ($5::timestamptz IS NULL OR dd.created_at < $5::timestamptz)
     AND ($6::uuid IS NULL OR dl.id = $6::uuid)
     AND dl.status = 'dead_letter'
   ORDER BY dd.created_at, dd.id
   LIMIT $7
   FOR UPDATE OF dl SKIP LOCKED),
moved AS (
  UPDATE mail.deliveries dl
     SET status = 'queued', next_attempt_at = now(), finished_at = NULL, locked_by = NULL, locked_until = NULL,
         updated_at = now()
    FROM target
   WHERE dl.id = target.delivery_id AND dl.status = 'dead_letter'
  RETURNING /*DELIVERY_COLUMNS*/),
marked AS (
  UPDATE mail.dead_letters dd SET requeued_at = now(), requeued_by = $8::text
    FROM target WHERE dd.id = target.dead_letter_id AND target.delivery_id::text IN (SELECT id FROM moved))
-- The statement's own changes are visible only through RETURNING, not to a SELECT of the table.
SELECT * FROM moved ORDER BY "cursorAt", id`);

interface RequeueResultShape {
  deliveries: DeliveryRow[];
}

const RequeueResult = builder.objectRef<RequeueResultShape>('RequeueResult').implement({
  fields: (t) => ({
    count: t.int({ resolve: (result) => result.deliveries.length }),
    deliveries: t.field({ type: [DeliveryRef], description: 'As they are now: queued, due at once.', resolve: (result) => result.deliveries }),
  }),
});

const RequeueDeadLetterInput = builder.inputType('RequeueDeadLetterInput', {
  description: 'Exactly one of `deliveryId` and `filter`.',
  fields: (t) => ({
    deliveryId: t.id({ required: false }),
    filter: t.field({ type: DeadLetterFilter, required: false }),
    max: t.int({ required: false, description: `With a filter: requeue at most this many (default ${REQUEUE_DEFAULT_MAX}, at most ${REQUEUE_MAX}), oldest first.` }),
  }),
});

builder.mutationField('requeueDeadLetter', (t) =>
  t.field({
    type: RequeueResult,
    authScopes: { scope: 'deliveries:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'RequeueDeadLetterSuccess' }, union: { name: 'RequeueDeadLetterResult' } },
    args: { input: t.arg({ type: RequeueDeadLetterInput, required: true }) },
    resolve: async (_root, { input }, context) => {
      const byId = input.deliveryId !== null && input.deliveryId !== undefined;
      if (byId === Boolean(input.filter)) throw new ValidationError('input', 'INVALID_INPUT', 'give exactly one of "deliveryId" and "filter"');
      const requeuedBy = `token:${context.principal.tokenName}`;
      if (byId) {
        const id = String(input.deliveryId);
        if (!isUuid(id)) throw new ValidationError('deliveryId', 'INVALID_INPUT', `"${id}" is not a delivery id (a UUID)`);
        const result = await context.db.query<DeliveryRow>(REQUEUE_SQL, [...deadLetterFilterParams(null), id, 1, requeuedBy]);
        if (result.rows.length === 0) {
          const delivery = await deliveryById(context.db, id);
          if (!delivery) throw new NotFoundError(`no delivery with id ${id}`);
          throw new ConflictError(`delivery ${id} is ${delivery.status}, not dead_letter`);
        }
        logDeliveryChanges(context.logger, 'dead letter requeued', requeuedBy, result.rows);
        return { deliveries: result.rows };
      }
      const max = input.max ?? REQUEUE_DEFAULT_MAX;
      if (!Number.isInteger(max) || max < 1 || max > REQUEUE_MAX) {
        throw new ValidationError('max', 'INVALID_INPUT', `max must be between 1 and ${REQUEUE_MAX}`);
      }
      const filter = deadLetterFilterParams(input.filter as DeadLetterFilterShape);
      const result = await context.db.query<DeliveryRow>(REQUEUE_SQL, [...filter, null, max, requeuedBy]);
      logDeliveryChanges(context.logger, 'dead letter requeued', requeuedBy, result.rows);
      return { deliveries: result.rows };
    },
  }),
);
