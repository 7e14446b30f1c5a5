// cancelDelivery: only while the delivery is still waiting (queued or retrying). The status change
// is the delivery lifecycle's (packages/shared/src/lifecycle/cancel-delivery.ts): guarded, it races
// fairly with the engine's claim — whichever commits first wins — and a delivery being sent (a
// live lease) or already finished is reported as such, never half-cancelled. What is returned is
// read through the API's read model (delivery.ts).
import { cancelDelivery } from '@postern/shared';
import { withinReach } from '../auth/producer-reach.ts';
import { builder } from './builder.ts';
import { DeliveryRef, type DeliveryRow, deliveryById, isUuid, logDeliveryChanges } from './delivery.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';

builder.mutationField('cancelDelivery', (t) =>
  t.field({
    type: DeliveryRef,
    authScopes: { scope: 'deliveries:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'CancelDeliverySuccess' }, union: { name: 'CancelDeliveryResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, args, context): Promise<DeliveryRow> => {
      const id = String(args.id);
      if (!isUuid(id)) throw new ValidationError('id', 'INVALID_INPUT', `"${id}" is not a delivery id (a UUID)`);
      // Another producer's delivery (without deliveries:write:any) is answered as none, before
      // anything changes; a delivery's source never changes, so the check cannot go stale.
      if (!withinReach(context.principal, 'deliveries:write', await deliveryById(context.db, id))) throw new NotFoundError(`no delivery with id ${id}`);
      const by = `token:${context.principal.tokenName}`;
      const cancelled = await cancelDelivery(context.db, id, `cancelled by ${by}`);
      // A cancelled delivery is final: read after the change, it is still the one cancelled.
      const delivery = await deliveryById(context.db, id);
      if (cancelled && delivery) {
        logDeliveryChanges(context.logger, 'delivery cancelled', by, [delivery]);
        return delivery;
      }
      if (!delivery) throw new NotFoundError(`no delivery with id ${id}`);
      const why = delivery.status === 'sending' ? 'is being sent right now' : `is already ${delivery.status}`;
      throw new ConflictError(`delivery ${id} ${why}; only queued or retrying deliveries can be cancelled`);
    },
  }),
);
