// Delivery: one recipient's copy of a message or command, and everything that happened to it.
import { DELIVERY_STATUSES, type DeliveryStatus, fillMark, isUuid, type Logger, PAYLOAD_MODES, type PayloadMode, type Queryable } from '@postern/shared';
import { reachableSource, withinReach } from '../auth/producer-reach.ts';
import type { Principal } from '../context.ts';
import { AttemptRef } from './attempt.ts';
import { badUserInput } from './bad-user-input.ts';
import { builder } from './builder.ts';
import { DeadLetterRef } from './dead-letter.ts';
import { recipientFilter, textFilter, uuidFilter } from './filter-arguments.ts';
import { InboundAuthenticationRef, inboundAuthenticationOf } from './inbound-auth.ts';
import { type KeysetStatements, keysetConnection, keysetStatements } from './pagination.ts';

export { DELIVERY_STATUSES, type DeliveryStatus, isUuid };

export interface DeliveryRow {
  id: string;
  status: DeliveryStatus;
  recipient: string;
  source: string;
  idempotencyKey: string | null;
  payloadMode: PayloadMode;
  messageId: string | null;
  templateId: string | null;
  templateLocale: string | null;
  templateHash: string | null;
  subject: string | null;
  category: string | null;
  urgent: boolean;
  envelopeFrom: string;
  rfcMessageId: string;
  attemptCount: number;
  nextAttemptAt: Date | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
  traceId: string | null;
  cursorAt: string;
}

/**
 * The delivery read model: DeliveryRow's columns of `mail.deliveries dl`, written once. Every
 * statement that returns deliveries (by id, the list, cancelDelivery's and requeueDeadLetter's
 * RETURNING) says `/*DELIVERY_COLUMNS*\/` where the columns go and gets them at module load
 * (withDeliveryColumns, fillMark), so they cannot drift apart. "cursorAt" is created_at in UTC at microsecond precision (pagination.ts).
 */
export const DELIVERY_COLUMNS = `dl.id::text AS id, dl.status, dl.recipient, dl.source, dl.idempotency_key AS "idempotencyKey",
       dl.payload_mode AS "payloadMode", dl.message_id::text AS "messageId", dl.template_id AS "templateId",
       dl.template_locale AS "templateLocale", dl.template_hash AS "templateHash", dl.subject, dl.category,
       dl.priority = 0 AS urgent, dl.envelope_from AS "envelopeFrom", dl.rfc_message_id AS "rfcMessageId", dl.attempt_count AS "attemptCount",
       dl.next_attempt_at AS "nextAttemptAt", dl.last_error AS "lastError", dl.created_at AS "createdAt",
       dl.updated_at AS "updatedAt", dl.finished_at AS "finishedAt", substr(dl.traceparent, 4, 32) AS "traceId",
       to_char(dl.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorAt"`;

/** One log line per delivery an operator changed, naming it and its message (`messageId`, the
 *  key the edge and the engine log it under) so that its whole story can be found by that id. */
export function logDeliveryChanges(logger: Logger, change: string, by: string, deliveries: readonly DeliveryRow[]): void {
  for (const delivery of deliveries) logger.info({ deliveryId: delivery.id, messageId: delivery.messageId ?? undefined, by }, change);
}

/** `template` with DELIVERY_COLUMNS where it says `/*DELIVERY_COLUMNS*\/` (once). */
export function withDeliveryColumns(template: string): string {
  return fillMark(template, 'DELIVERY_COLUMNS', DELIVERY_COLUMNS);
}

const DELIVERY_BY_ID_SQL = withDeliveryColumns(`
SELECT /*DELIVERY_COLUMNS*/
  FROM mail.deliveries dl
 WHERE dl.id = $1::uuid`);

export async function deliveryById(db: Queryable, id: string): Promise<DeliveryRow | null> {
  if (!isUuid(id)) return null;
  const result = await db.query<DeliveryRow>(DELIVERY_BY_ID_SQL, [id]);
  return result.rows[0] ?? null;
}

const DELIVERIES_BY_ID_SQL = withDeliveryColumns(`
SELECT /*DELIVERY_COLUMNS*/
  FROM mail.deliveries dl
 WHERE dl.id = ANY ($1::uuid[])
 ORDER BY "cursorAt", id`);

/** The deliveries with these ids (UUIDs: the cast would fail the whole statement otherwise), oldest
 *  first, as the lists order them: created_at, then id. */
export async function deliveriesById(db: Queryable, ids: readonly string[]): Promise<DeliveryRow[]> {
  if (ids.length === 0) return [];
  const result = await db.query<DeliveryRow>(DELIVERIES_BY_ID_SQL, [ids]);
  return result.rows;
}

export const DeliveryStatusEnum = builder.enumType('DeliveryStatus', { values: DELIVERY_STATUSES });
const PayloadModeEnum = builder.enumType('PayloadMode', {
  description: 'relay: bytes of a received message; template: rendered at send time; rendered: given content.',
  values: PAYLOAD_MODES,
});

const TemplateUse = builder.objectRef<{ id: string; locale: string; hash: string }>('TemplateUse').implement({
  description: 'Which immutable catalog template a delivery renders, and the hash of the exact files.',
  fields: (t) => ({ id: t.exposeString('id'), locale: t.exposeString('locale'), hash: t.exposeString('hash') }),
});

export const DeliveryRef = builder.objectRef<DeliveryRow>('Delivery');

DeliveryRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.field({ type: DeliveryStatusEnum, resolve: (delivery) => delivery.status }),
    recipient: t.exposeString('recipient'),
    source: t.exposeString('source', { description: "'smtp' (the edge), or the producer that sent the command." }),
    idempotencyKey: t.exposeString('idempotencyKey', { nullable: true }),
    payloadMode: t.field({ type: PayloadModeEnum, resolve: (delivery) => delivery.payloadMode }),
    messageId: t.exposeID('messageId', {
      nullable: true,
      description:
        'The received message (relay deliveries): the id of the edge\'s "250 2.0.0 queued as <id>" reply and of its Received: header, and `messageId` in the logs.',
    }),
    template: t.field({
      type: TemplateUse,
      nullable: true,
      resolve: (delivery) =>
        delivery.templateId && delivery.templateLocale && delivery.templateHash
          ? { id: delivery.templateId, locale: delivery.templateLocale, hash: delivery.templateHash }
          : null,
    }),
    // Message content is not delivery metadata: reading a delivery (or sending one) does not let a
    // token read what the mail says. Only the subject is exposed; bodies and variables never are.
    subject: t.exposeString('subject', { nullable: true, authScopes: { scope: 'content:read' } }),
    // A header of the stored message: content, like the subject (inbound-auth.ts).
    inboundAuthentication: t.field({
      type: InboundAuthenticationRef,
      nullable: true,
      authScopes: { scope: 'content:read' },
      description:
        'SPF, DKIM, DMARC and ARC of the received message this delivery relays, as the edge evaluated them. Null for deliveries of commands and when the edge checked nothing (MAIL_INBOUND_AUTH_POLICY=off). Needs `content:read`.',
      resolve: async (delivery, _args, context) =>
        delivery.messageId && isUuid(delivery.messageId) ? inboundAuthenticationOf(await context.loaders.inboundAuthOfMessage.load(delivery.messageId)) : null,
    }),
    category: t.exposeString('category', { nullable: true }),
    urgent: t.exposeBoolean('urgent', {
      description: 'Claimed before every other due delivery: its category is one of MAIL_URGENT_CATEGORIES (authsession unless configured), decided at intake.',
    }),
    envelopeFrom: t.exposeString('envelopeFrom'),
    rfcMessageId: t.exposeString('rfcMessageId', { description: 'The Message-ID, the same on every attempt.' }),
    attemptCount: t.exposeInt('attemptCount'),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true }),
    lastError: t.exposeString('lastError', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    traceId: t.exposeString('traceId', {
      nullable: true,
      description:
        'The OpenTelemetry trace this delivery continues (32 hex digits): an edge message\'s from its SMTP session, a command\'s from its producer or sendEmail caller, a bounce\'s from the failed attempt. Its claims, attempts and the relay\'s replies are spans of it, and the log lines written during them carry it as `otel_trace_id`. Null when nothing traced the intake.',
    }),
    // Nullable so that a token without the scope still gets the rest of the delivery: the refusal
    // is this field's null and a FORBIDDEN error, whichever path reached the delivery.
    attempts: t.field({
      type: [AttemptRef],
      nullable: true,
      authScopes: { scope: 'attempts:read' },
      description: 'Every attempt, first to last. Needs `attempts:read`.',
      resolve: (delivery, _args, context) => context.loaders.attemptsOfDelivery.load(delivery.id),
    }),
    deadLetter: t.field({
      type: DeadLetterRef,
      nullable: true,
      resolve: (delivery, _args, context) => context.loaders.deadLetterOfDelivery.load(delivery.id),
    }),
  }),
});

export const DeliveryFilter = builder.inputType('DeliveryFilter', {
  fields: (t) => ({
    status: t.field({ type: [DeliveryStatusEnum], required: false, description: 'Any of these statuses.' }),
    recipient: t.string({ required: false, description: 'Exact address (compared lower-cased).' }),
    source: t.string({ required: false }),
    createdAfter: t.field({ type: 'DateTime', required: false, description: 'Inclusive.' }),
    createdBefore: t.field({ type: 'DateTime', required: false, description: 'Exclusive.' }),
    messageId: t.id({ required: false, description: 'The deliveries of one received message: the id the edge answered "queued as".' }),
    idempotencyKey: t.string({
      required: false,
      description:
        "The delivery a producer's key holds: what the same command again would be answered with (`duplicate`), within MAIL_IDEMPOTENCY_WINDOW (past it the key is free and finds nothing). Keys are per producer: an operator's token gives `source` too.",
    }),
  }),
});

export interface DeliveryFilterShape {
  status?: readonly DeliveryStatus[] | null;
  recipient?: string | null;
  source?: string | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
  messageId?: string | number | null;
  idempotencyKey?: string | null;
}

/** The filter as the parameters $1..$7 of DELIVERIES_SQL; null: not filtered on. The source is
 *  the token's producer when it reaches only its own deliveries (auth/producer-reach.ts). */
function deliveryFilterParams(filter: DeliveryFilterShape | null | undefined, principal: Principal): unknown[] {
  const source = reachableSource(principal, 'deliveries:read', textFilter(filter?.source, 'filter.source'), 'filter.source');
  const idempotencyKey = textFilter(filter?.idempotencyKey, 'filter.idempotencyKey');
  // A key names a delivery only with its producer (one key space per producer), and is found
  // through the reservation's primary key (source, idempotency_key): without a source it would be
  // a scan of every producer's reservations.
  if (idempotencyKey !== null && source === null) {
    throw badUserInput('filter.idempotencyKey: give filter.source too: idempotency keys are per producer', 'filter.idempotencyKey');
  }
  return [
    filter?.status && filter.status.length > 0 ? [...filter.status] : null,
    recipientFilter(filter?.recipient),
    source,
    filter?.createdAfter ?? null,
    filter?.createdBefore ?? null,
    uuidFilter(filter?.messageId, 'filter.messageId'),
    idempotencyKey,
  ];
}

// Filters $1..$7 (deliveryFilterParams), then the keyset parameters $8..$12 (pagination.ts). A key
// ($7, always with its source $3) is looked up in mail.idempotency_reservations, by its primary key:
// the reservation is written with the delivery and purged after MAIL_IDEMPOTENCY_WINDOW, so it
// names the one delivery the key holds now; mail.deliveries has no index on the key, and one would
// cost every accepted command an index entry for a read that a retry of the key answers anyway.
export const DELIVERIES_SQL: KeysetStatements = keysetStatements(
  { list: 'deliveries', idType: 'uuid' },
  withDeliveryColumns(`
SELECT /*DELIVERY_COLUMNS*/
  FROM mail.deliveries dl
 WHERE ($1::text[] IS NULL OR dl.status = ANY ($1::text[]))
   AND ($2::text IS NULL OR dl.recipient = lower($2::text))
   AND ($3::text IS NULL OR dl.source = $3::text)
   AND ($4::timestamptz IS NULL OR dl.created_at >= $4::timestamptz)
   AND ($5::timestamptz IS NULL OR dl.created_at < $5::timestamptz)
   AND ($6::uuid IS NULL OR dl.message_id = $6::uuid)
   AND ($7::text IS NULL OR dl.id = (SELECT r.delivery_id FROM mail.idempotency_reservations r
                                      WHERE r.source = $3::text AND r.idempotency_key = $7::text))
   AND ($8::timestamptz IS NULL OR (dl.created_at, dl.id) > ($8::timestamptz, $9::uuid))
   AND ($10::timestamptz IS NULL OR (dl.created_at, dl.id) < ($10::timestamptz, $11::uuid))
 ORDER BY dl.created_at /*DIRECTION*/, dl.id /*DIRECTION*/
 LIMIT $12`),
);

builder.queryFields((t) => ({
  deliveries: t.connection({
    type: DeliveryRef,
    authScopes: { scope: 'deliveries:read' },
    description: 'Oldest first; `last: n` without a cursor gives the newest n.',
    args: { filter: t.arg({ type: DeliveryFilter, required: false }) },
    resolve: (_root, args, context) =>
      keysetConnection(args, DELIVERIES_SQL, deliveryFilterParams(args.filter, context.principal), async (text, values) => {
        const result = await context.db.query<DeliveryRow>(text, values);
        return result.rows;
      }),
  }),
  delivery: t.field({
    type: DeliveryRef,
    nullable: true,
    authScopes: { scope: 'deliveries:read' },
    args: { id: t.arg.id({ required: true }) },
    description: "Null for an id that is not a delivery's, or one of another producer's (without `deliveries:read:any`).",
    resolve: async (_root, args, context) =>
      withinReach(context.principal, 'deliveries:read', await deliveryById(context.db, String(args.id))),
  }),
}));
