// The schema: every type file registers itself on the one builder; importing them all here, in one
// place, is what puts them in the schema.
import './scalars.ts';
import './error-types.ts';
import './domain.ts';
import './alias.ts';
import './dkim-key.ts';
import './route.ts';
import './attempt.ts';
import './delivery.ts';
import './dead-letter.ts';
import './malformed-command.ts';
import './suppression.ts';
import './queue-stats.ts';
import './worker.ts';
import './send-email.ts';
import './requeue-dead-letter.ts';
import './cancel-delivery.ts';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from './builder.ts';

export const schema = builder.toSchema();

/** The committed apps/api/schema.graphql is exactly this text. */
export function printedSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
