// Claim: the engine scheduler's status change queued|retrying -> sending (no-health-endpoints:
// "scheduler claims rely on FOR UPDATE SKIP LOCKED"). Due rows are taken urgent first (priority 0:
// MAIL_URGENT_CATEGORIES, intake/urgency.ts), then oldest first, through the partial index
// deliveries_due_idx (priority, next_attempt_at), as leases: locked_by names the claiming engine,
// locked_until is when any engine may take the row back (reclaim-expired-leases.ts). Two engines never claim
// the same row: each skips the rows the other has locked. attempt_count is incremented here, so
// the attempt about to start has a number before anything can go wrong.
// The suppression list is read in the same statement (no extra round trip per delivery), and so is
// the DKIM keys' change counter, which tells the engine whether the keys it holds are still current
// (apps/core/src/delivery/signing-key-cache.ts).
import type { Queryable } from '../aliases/index.ts';
import type { PayloadMode } from './statuses.ts';

export interface ClaimedDelivery {
  id: string;
  source: string;
  payload_mode: PayloadMode;
  message_id: string | null;
  template_id: string | null;
  template_locale: string | null;
  template_hash: string | null;
  template_variables: Record<string, unknown> | null;
  subject: string | null;
  text_body: string | null;
  html_body: string | null;
  category: string | null;
  recipient: string;
  envelope_from: string;
  rfc_message_id: string;
  attempt_count: number;
  created_at: Date;
  /** When the delivery entered the queue (its insert, or the operator's requeue of its dead letter):
   *  its queue lifetime (MAIL_QUEUE_LIFETIME) counts from here. */
  queued_since: Date;
  /** How long it had been in the queue when claimed, on PostgreSQL's clock (now() - queued_since):
   *  its lifetime is measured from this and claimed_at_ms, never from the engine's own Date, whose
   *  clock may be off by hours against the one that wrote queued_since. */
  queued_ms: number;
  /** performance.now() when the claim returned: the engine's monotonic clock, for the time since. */
  claimed_at_ms: number;
  /** Reason from the suppression list, or null. */
  suppressed_reason: string | null;
  /** The edge's message (relay deliveries): SMTPUTF8 and BODY= as the sender gave them at MAIL FROM,
   *  repeated to the relay only when the sender used them. */
  smtputf8: boolean | null;
  body_type: '7bit' | '8bitmime' | null;
  /** The trace the delivery continues (W3C traceparent, as stored at intake), or null. */
  traceparent: string | null;
  /** mail.dkim_keys_generation as the claim saw it (a bigint, as text): the same in every row. */
  dkim_keys_generation: string;
}

const CLAIM_SQL = `
WITH due AS (
  SELECT id FROM mail.deliveries
   WHERE status IN ('queued', 'retrying') AND next_attempt_at <= now()
   ORDER BY priority, next_attempt_at
   LIMIT $2
   FOR UPDATE SKIP LOCKED)
UPDATE mail.deliveries d
   SET status = 'sending', locked_by = $1, locked_until = now() + $3::double precision * interval '1 millisecond',
       next_attempt_at = NULL, attempt_count = d.attempt_count + 1, updated_at = now()
  FROM due
 WHERE d.id = due.id
RETURNING d.id, d.source, d.payload_mode, d.message_id, d.template_id, d.template_locale, d.template_hash,
          d.template_variables, d.subject, d.text_body, d.html_body, d.category, d.recipient, d.envelope_from,
          d.rfc_message_id, d.attempt_count, d.created_at, d.queued_since, d.traceparent,
          (EXTRACT(EPOCH FROM now() - d.queued_since) * 1000)::double precision AS queued_ms,
          (SELECT s.reason FROM mail.suppressions s
            WHERE s.address = d.recipient AND (s.expires_at IS NULL OR s.expires_at > now())) AS suppressed_reason,
          (SELECT m.smtputf8 FROM mail.messages m WHERE m.id = d.message_id) AS smtputf8,
          (SELECT m.body_type FROM mail.messages m WHERE m.id = d.message_id) AS body_type,
          (SELECT g.generation FROM mail.dkim_keys_generation g)::text AS dkim_keys_generation`;

export async function claimDueDeliveries(db: Queryable, workerId: string, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
  const { rows } = await db.query<ClaimedDelivery>({ name: 'postern_claim_deliveries', text: CLAIM_SQL, values: [workerId, limit, leaseMs] });
  // Set on the rows pg made, not copied into new ones: the claim is the engine's hot path.
  const claimedAtMs = performance.now();
  for (const row of rows) row.claimed_at_ms = claimedAtMs;
  return rows;
}
