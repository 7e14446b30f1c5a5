// Whose deliveries a token reads and changes. `deliveries:read` and `deliveries:write` reach the
// deliveries of the token's own producer alone (their `source`): a service's token lists, reads,
// cancels and requeues its own mail, never another producer's recipients, errors or dead letters.
// Their `:any` forms (and `admin`) reach every producer's, the edge's (`smtp`) and Postern's bounces
// (`postern-dsn`) too: an operator's scopes. A delivery out of reach is answered exactly as one
// that does not exist, so a producer's token cannot even learn that another's delivery id is real.
// The commands Postern refused (malformedCommands) are read the same way: `deliveries:read` reaches
// the token's own producer's refusals, `queue:read` (an operator's scope) every one.
import { grantsScope, type ProducerScope, producerReach } from '@postern/shared';
import { GraphQLError } from 'graphql';
import type { Principal } from '../context.ts';

/** The one producer whose deliveries the token reaches with `scope`, or null for every producer's. */
export function deliveriesReach(principal: Principal, scope: ProducerScope): string | null {
  return producerReach(principal.scopes, scope, principal.producer);
}

/**
 * The `source` a list of deliveries is filtered on: the token's producer when it reaches only its
 * own (a filter naming that producer is the same list), the filter as given when it reaches every
 * producer's. A filter naming another producer is FORBIDDEN, naming the field and the scope that
 * would allow it, rather than an empty list that reads as "none".
 */
export function reachableSource(principal: Principal, scope: ProducerScope, requested: string | null, field: string): string | null {
  return sourceWithin(principal, deliveriesReach(principal, scope), requested, field, 'deliveries', `${scope}:any`);
}

/** `requested` within `reach` (see reachableSource); FORBIDDEN naming `wider`, the scope that reaches every producer's. */
function sourceWithin(principal: Principal, reach: string | null, requested: string | null, field: string, what: string, wider: string): string | null {
  if (reach === null || requested === null || requested === reach) return reach ?? requested;
  throw new GraphQLError(
    `${field}: token "${principal.tokenName}" reaches producer "${reach}"'s ${what} only; omit ${field}, give "${reach}", or use a token with ${wider}`,
    { extensions: { code: 'FORBIDDEN', field, producer: reach, requiredScope: wider } },
  );
}

/**
 * Whose refused commands (mail.malformed_commands) the token reads: null for every one, the rows
 * whose producer could not be read (source NULL) included, with `queue:read` (or `admin`); else
 * its own producer's alone (`deliveries:read`: what happened to its commands is a delivery or a
 * refusal). `deliveries:read:any` does not widen this: every producer's refusals stay `queue:read`'s.
 */
export function refusalsReach(principal: Principal): string | null {
  return grantsScope(principal.scopes, 'queue:read') ? null : principal.producer;
}

/** The `source` a list of refused commands is filtered on, as reachableSource does for deliveries:
 *  a filter naming another producer is FORBIDDEN, naming `queue:read`. */
export function reachableRefusalSource(principal: Principal, requested: string | null, field: string): string | null {
  return sourceWithin(principal, refusalsReach(principal), requested, field, 'refused commands', 'queue:read');
}

/** The delivery if the token reaches it with `scope`, else null: as though it did not exist. */
export function withinReach<T extends { source: string }>(principal: Principal, scope: ProducerScope, delivery: T | null): T | null {
  const reach = deliveriesReach(principal, scope);
  return delivery && (reach === null || delivery.source === reach) ? delivery : null;
}
