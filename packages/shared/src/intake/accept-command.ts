// Accepting a typed command: the check and accept steps of the one intake (intake-command.ts) behind
// the Redis Stream (apps/core) and the GraphQL sendEmail mutation (apps/api). The template is
// checked against the catalog (unknown template, missing variable: refused before anything is
// stored), then ONE transaction reserves the idempotency key and inserts the delivery. A duplicate
// returns the delivery the first command created; the same key with other content is a conflict,
// refused (and quarantined by the intake).
// The delivery insert fires mail_delivery_due on commit, waking an idle engine.
//
// Reservations are keyed by (source, idempotency key) and `source` is the producer: the stream's
// `source` field, or the producer an API token carries (apps/api refuses any other). So a key, a
// duplicate and a conflict only ever concern one producer's own deliveries.
import { createHash, randomUUID } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { Pool, PoolClient } from '../db/pool.ts';
import { checkTemplateCommand } from '../templates/render-template.ts';
import type { TemplateCatalog } from '../templates/template-catalog.ts';
import { type DecodeFailure, type DeliveryCommand, decodeFailure } from './delivery-command.ts';
import { priorityOf } from './urgency.ts';

export interface AcceptCommandOptions {
  catalog: TemplateCatalog;
  /** MAIL_SMTP_FROM: the envelope sender of mail Postern writes, and the Message-ID's domain. */
  sender: string;
  /** MAIL_URGENT_CATEGORIES (default: authsession): claimed before the rest (urgency.ts). */
  urgentCategories?: readonly string[];
}

export type AcceptOutcome =
  | { status: 'created'; deliveryId: string }
  | { status: 'duplicate'; deliveryId: string }
  | { status: 'refused'; failure: DecodeFailure };

/** What makes two commands "the same": everything but the version they were encoded in and the
 *  trace they continue, so a producer moving from v1 to v2 mid-retry, or retrying from another
 *  trace, is still recognised as a duplicate. The content is put
 *  in RFC 8785 canonical form (keys sorted at every level, one spelling of every number and
 *  string), so the same content always hashes the same. */
export function commandHash(command: DeliveryCommand): string {
  const { schemaVersion: _version, traceparent: _trace, ...content } = command;
  return `sha256:${createHash('sha256').update(canonicalize(content) ?? '').digest('hex')}`;
}

// Every command runs the three statements below, so each is a named statement: PostgreSQL parses
// and plans it once per connection instead of once per command. Unnamed, a command cost about a
// fifth more CPU on the machine (acceptCommand eight at a time: 750–775 µs against 585–605;
// docs/performance.md, "The intake's statements").
const FIND_RESERVATION = `
SELECT request_hash, delivery_id FROM mail.idempotency_reservations
 WHERE source = $1 AND idempotency_key = $2`;

const INSERT_DELIVERY = `
INSERT INTO mail.deliveries (id, source, idempotency_key, payload_mode, template_id, template_locale, template_hash,
                             template_variables, subject, text_body, html_body, category, recipient, envelope_from,
                             rfc_message_id, traceparent, priority, status, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'queued', now())
ON CONFLICT (id) DO NOTHING
RETURNING id`;

const INSERT_RESERVATION = `
INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id)
VALUES ($1, $2, $3, $4)`;

class ReservationRace extends Error {}

/** Rows inserted (0: the id is taken). ON CONFLICT (id) covers a committed row; a concurrent insert
 *  of the same id can still surface as 23505 on the other unique index (rfc_message_id, derived from
 *  the id), which PostgreSQL reports instead of skipping: the same race, looked at again. */
async function insertDelivery(client: PoolClient, values: unknown[]): Promise<number> {
  try {
    return (await client.query({ name: 'postern_insert_delivery', text: INSERT_DELIVERY, values })).rowCount ?? 0;
  } catch (error) {
    if ((error as { code?: string }).code === '23505') return 0;
    throw error;
  }
}

function refused(command: DeliveryCommand, code: DecodeFailure['code'], detail: string, deliveryId?: string): AcceptOutcome {
  return {
    status: 'refused',
    failure: decodeFailure(code, detail, { schemaVersion: command.schemaVersion, source: command.source, deliveryId: deliveryId ?? command.deliveryId }),
  };
}

async function acceptOnce(
  client: PoolClient,
  command: DeliveryCommand,
  row: { hash: string; templateLocale: string | null; templateHash: string | null; category: string | null },
  options: AcceptCommandOptions,
  retry: boolean,
): Promise<AcceptOutcome> {
  const existing = await client.query<{ request_hash: string; delivery_id: string }>({
    name: 'postern_find_reservation',
    text: FIND_RESERVATION,
    values: [command.source, command.idempotencyKey],
  });
  const reservation = existing.rows[0];
  if (reservation) {
    if (reservation.request_hash === row.hash) return { status: 'duplicate', deliveryId: reservation.delivery_id };
    return refused(command, 'idempotency_conflict', `idempotency key "${command.idempotencyKey}" of source "${command.source}" was used for other content (delivery ${reservation.delivery_id})`, reservation.delivery_id);
  }
  const id = command.deliveryId ?? randomUUID();
  const domain = options.sender.split('@').pop() ?? 'localhost';
  const { payload } = command;
  const inserted = await insertDelivery(client, [
    id,
    command.source,
    command.idempotencyKey,
    payload.mode,
    payload.mode === 'template' ? payload.templateId : null,
    row.templateLocale,
    row.templateHash,
    payload.mode === 'template' ? JSON.stringify(payload.variables) : null,
    payload.mode === 'rendered' ? payload.subject : null,
    payload.mode === 'rendered' ? payload.text : null,
    payload.mode === 'rendered' ? payload.html : null,
    row.category,
    command.recipient,
    options.sender,
    `<${id}@${domain}>`,
    command.traceparent,
    priorityOf(row.category, options.urgentCategories),
  ]);
  if (inserted === 0) {
    // The id is taken. Either by an identical command of the same producer running at the same
    // moment (its INSERT held this one until it committed: look again, it is a duplicate), or, on
    // the second look, by another command — whose producer and content this answer must not reveal.
    if (retry) return refused(command, 'idempotency_conflict', `delivery id ${id} is already used by another command`, id);
    throw new ReservationRace();
  }
  try {
    await client.query({ name: 'postern_insert_reservation', text: INSERT_RESERVATION, values: [command.source, command.idempotencyKey, row.hash, id] });
  } catch (error) {
    // 23505: a concurrent command with the same key committed first; start again and find it.
    if ((error as { code?: string }).code === '23505') throw new ReservationRace();
    throw error;
  }
  return { status: 'created', deliveryId: id };
}

export async function acceptCommand(pool: Pool, command: DeliveryCommand, options: AcceptCommandOptions): Promise<AcceptOutcome> {
  let templateLocale: string | null = null;
  let templateHash: string | null = null;
  let category = command.category;
  if (command.payload.mode === 'template') {
    const lookup = checkTemplateCommand(options.catalog, command.payload.templateId, command.payload.locale, command.payload.variables);
    if (!lookup.ok) return refused(command, lookup.reason, lookup.detail);
    templateLocale = lookup.locale.locale;
    templateHash = lookup.locale.hash;
    category ??= lookup.template.category;
  }
  // Runbook (no-health-endpoints, docs/incidents.md): the producers named authsession and notification are the categories stub
  // mode tells apart, when the command does not say.
  if (category === null && (command.source === 'authsession' || command.source === 'notification')) category = command.source;
  const row = { hash: commandHash(command), templateLocale, templateHash, category };

  for (let attempt = 0; ; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const outcome = await acceptOnce(client, command, row, options, attempt > 0);
      if (outcome.status === 'created') await client.query('COMMIT');
      else await client.query('ROLLBACK');
      return outcome;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      if (error instanceof ReservationRace && attempt === 0) continue;
      throw error;
    } finally {
      client.release(broken);
    }
  }
}
