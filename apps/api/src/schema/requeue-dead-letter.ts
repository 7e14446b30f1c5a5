// requeueDeadLetter: put dead-lettered deliveries back in the queue, due now. One by delivery id, or
// every match of a filter up to a cap (a typo in a filter must not requeue a month of mail at once).
// The status change is the delivery lifecycle's (packages/shared/src/lifecycle/requeue-dead-letters.ts):
// each delivery moves in one guarded UPDATE and its dead-letter row is marked with it, so two
// operators requeueing together requeue each delivery once. What moved is read through the API's
// read model (delivery.ts) in the same transaction: as it was requeued, before an engine can claim it.
import { ANY_DEAD_LETTER, type Pool, type RequeueRequest, requeueDeadLetters, withTransaction } from '@postern/shared';
import { deliveriesReach, withinReach } from '../auth/producer-reach.ts';
import { builder } from './builder.ts';
import { DeadLetterFilter, type DeadLetterFilterShape, deadLetterFilter } from './dead-letter.ts';
import { DeliveryRef, type DeliveryRow, deliveriesById, deliveryById, isUuid, logDeliveryChanges } from './delivery.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';

export const REQUEUE_MAX = 1_000;
const REQUEUE_DEFAULT_MAX = 100;

/** Requeues and reads the requeued deliveries, oldest first, in one transaction. */
function requeue(db: Pool, request: RequeueRequest): Promise<DeliveryRow[]> {
  return withTransaction(db, async (client) => deliveriesById(client, await requeueDeadLetters(client, request)));
}

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
        // Only the token's own producer's delivery, unless it holds deliveries:write:any: the
        // statement itself is limited, and another producer's delivery is answered as none.
        const filter = { ...ANY_DEAD_LETTER, source: deliveriesReach(context.principal, 'deliveries:write') };
        const deliveries = await requeue(context.db, { filter, deliveryId: id, max: 1, requeuedBy });
        if (deliveries.length === 0) {
          const delivery = withinReach(context.principal, 'deliveries:write', await deliveryById(context.db, id));
          if (!delivery) throw new NotFoundError(`no delivery with id ${id}`);
          throw new ConflictError(`delivery ${id} is ${delivery.status}, not dead_letter`);
        }
        logDeliveryChanges(context.logger, 'dead letter requeued', requeuedBy, deliveries);
        return { deliveries };
      }
      const max = input.max ?? REQUEUE_DEFAULT_MAX;
      if (!Number.isInteger(max) || max < 1 || max > REQUEUE_MAX) {
        throw new ValidationError('max', 'INVALID_INPUT', `max must be between 1 and ${REQUEUE_MAX}`);
      }
      const filter = deadLetterFilter(input.filter as DeadLetterFilterShape, context.principal, 'deliveries:write');
      const deliveries = await requeue(context.db, { filter, deliveryId: null, max, requeuedBy });
      logDeliveryChanges(context.logger, 'dead letter requeued', requeuedBy, deliveries);
      return { deliveries };
    },
  }),
);
