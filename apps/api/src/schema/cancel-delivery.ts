// cancelDelivery: only while the delivery is still waiting (queued or retrying). The guarded UPDATE
// races fairly with the engine's claim: whichever commits first wins, and a delivery being sent
// (a live lease) or already finished is reported as such, never half-cancelled.
import { builder } from './builder.ts';
import { DeliveryRef, type DeliveryRow, deliveryById, isUuid, logDeliveryChanges, withDeliveryColumns } from './delivery.ts';
import { INPUT_ERRORS } from './error-types.ts';
import { ConflictError, NotFoundError, ValidationError } from './errors.ts';

const CANCEL_SQL = withDeliveryColumns(`
UPDATE mail.deliveries dl
   SET status = 'cancelled', next_attempt_at = NULL, finished_at = now(), updated_at = now(),
       last_error = $2
 WHERE dl.id = $1::uuid AND dl.status IN ('queued', 'retrying')
RETURNING /*DELIVERY_COLUMNS*/`);

builder.mutationField('cancelDelivery', (t) =>
  t.field({
    type: DeliveryRef,
    authScopes: { scope: 'deliveries:write' },
    errors: { types: INPUT_ERRORS, result: { name: 'CancelDeliverySuccess' }, union: { name: 'CancelDeliveryResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, args, context): Promise<DeliveryRow> => {
      const id = String(args.id);
      if (!isUuid(id)) throw new ValidationError('id', 'INVALID_INPUT', `"${id}" is not a delivery id (a UUID)`);
      const by = `token:${context.principal.tokenName}`;
      const result = await context.db.query<DeliveryRow>(CANCEL_SQL, [id, `cancelled by ${by}`]);
      const cancelled = result.rows[0];
      if (cancelled) {
        logDeliveryChanges(context.logger, 'delivery cancelled', by, [cancelled]);
        return cancelled;
      }
      const delivery = await deliveryById(context.db, id);
      if (!delivery) throw new NotFoundError(`no delivery with id ${id}`);
      const why = delivery.status === 'sending' ? 'is being sent right now' : `is already ${delivery.status}`;
      throw new ConflictError(`delivery ${id} ${why}; only queued or retrying deliveries can be cancelled`);
    },
  }),
);
