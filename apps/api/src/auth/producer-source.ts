// The `source` a sendEmail writes under is the producer its token carries, never one the caller
// names: a `send` token that could write under any source could take another producer's
// idempotency keys (its real send then refused as a conflict) and read the other's delivery through
// a `duplicate` answer. A source that names the token's own producer is accepted (clients written
// before tokens carried one keep working); any other is FORBIDDEN, naming the field and the producer.
import { GraphQLError } from 'graphql';
import type { Principal } from '../context.ts';

export function producerSource(principal: Principal, requested: string | null | undefined, field: string): string {
  if (requested === null || requested === undefined || requested === principal.producer) return principal.producer;
  throw new GraphQLError(
    `${field}: token "${principal.tokenName}" sends as producer "${principal.producer}" only; omit ${field} or give "${principal.producer}"`,
    { extensions: { code: 'FORBIDDEN', field, producer: principal.producer } },
  );
}
