// Per-request batching of the nested fields (Delivery.attempts, Delivery.deadLetter,
// DeadLetter.lastAttempt, DeadLetter.delivery): a page of 100 rows asks for them 100 times in the
// same tick, and each loader turns those asks into one `= ANY ($1)` statement. Batching only, no
// cache (`cache: false`): a request may run several mutations in turn, and a field resolved after
// one of them must read the row as it is then, as it did when each field ran its own query. The
// loaders live in the request's context, so one token's reads are never batched with another's.
import type { Queryable } from '@postern/shared';
import DataLoader from 'dataloader';
import type { AttemptRow } from './attempt.ts';
import { type DeadLetterRow, withDeadLetterColumns } from './dead-letter.ts';
import { type DeliveryRow, deliveriesById } from './delivery.ts';
import { INBOUND_AUTH_OF_MESSAGES_SQL, type InboundAuthRow } from './inbound-auth.ts';

const BATCH_ONLY = { cache: false } as const;

// One statement for attempts by delivery and attempts by id: with the values bound, PostgreSQL
// folds the branch not asked for away and uses the matching index.
export const ATTEMPTS_SQL = `
SELECT at.id::text AS id, at.delivery_id::text AS "deliveryId", at.attempt_number AS "attemptNumber",
       at.status, at.smtp_code AS "smtpCode", at.enhanced_code AS "enhancedCode", at.smtp_text AS "smtpText",
       at.worker_id AS "workerId", at.started_at AS "startedAt", at.finished_at AS "finishedAt", at.duration_ms AS "durationMs",
       at.route_domain AS "routeDomain", at.route_relay AS "routeRelay", at.route_tls AS "routeTls"
  FROM mail.attempts at
 WHERE ($1::uuid[] IS NULL OR at.delivery_id = ANY ($1::uuid[]))
   AND ($2::bigint[] IS NULL OR at.id = ANY ($2::bigint[]))
 ORDER BY at.delivery_id, at.attempt_number`;

const DEAD_LETTERS_OF_DELIVERIES_SQL = withDeadLetterColumns(`
SELECT /*DEAD_LETTER_COLUMNS*/
  FROM mail.dead_letters dd
 WHERE dd.delivery_id = ANY ($1::uuid[])`);

export interface Loaders {
  /** Every attempt of a delivery, first to last. */
  attemptsOfDelivery: DataLoader<string, AttemptRow[]>;
  attemptById: DataLoader<string, AttemptRow | null>;
  deadLetterOfDelivery: DataLoader<string, DeadLetterRow | null>;
  /** Keys must be UUIDs (isUuid): the cast would fail the whole batch otherwise. */
  deliveryById: DataLoader<string, DeliveryRow | null>;
  /** A received message's inbound authentication, by message id (UUIDs). */
  inboundAuthOfMessage: DataLoader<string, InboundAuthRow | null>;
}

/** Rows grouped under their key, in the order of `keys` (what DataLoader requires). */
function byKey<Row>(keys: readonly string[], rows: readonly Row[], key: (row: Row) => string): Row[][] {
  const groups = new Map<string, Row[]>(keys.map((k) => [k, []]));
  for (const row of rows) groups.get(key(row))?.push(row);
  return keys.map((k) => groups.get(k) ?? []);
}

export function createLoaders(db: Queryable): Loaders {
  return {
    attemptsOfDelivery: new DataLoader(async (ids) => {
      const { rows } = await db.query<AttemptRow>(ATTEMPTS_SQL, [ids, null]);
      return byKey(ids, rows, (row) => row.deliveryId);
    }, BATCH_ONLY),
    attemptById: new DataLoader(async (ids) => {
      const { rows } = await db.query<AttemptRow>(ATTEMPTS_SQL, [null, ids]);
      return byKey(ids, rows, (row) => row.id).map((group) => group[0] ?? null);
    }, BATCH_ONLY),
    deadLetterOfDelivery: new DataLoader(async (ids) => {
      const { rows } = await db.query<DeadLetterRow>(DEAD_LETTERS_OF_DELIVERIES_SQL, [ids]);
      return byKey(ids, rows, (row) => row.deliveryId).map((group) => group[0] ?? null);
    }, BATCH_ONLY),
    deliveryById: new DataLoader(async (ids) => byKey(ids, await deliveriesById(db, ids), (row) => row.id).map((group) => group[0] ?? null), BATCH_ONLY),
    inboundAuthOfMessage: new DataLoader(async (ids) => {
      const { rows } = await db.query<InboundAuthRow>(INBOUND_AUTH_OF_MESSAGES_SQL, [ids]);
      return byKey(ids, rows, (row) => row.messageId).map((group) => group[0] ?? null);
    }, BATCH_ONLY),
  };
}
