// One delivery with its attempts and dead-letter entry: GET /api/v1/internal/deliveries/{id}
// (the runbook's smoke request).
import { isUuid, type Queryable } from '@postern/shared';

export async function getDeliveryReport(db: Queryable, id: string): Promise<Record<string, unknown> | null> {
  if (!isUuid(id)) return null;
  const { rows } = await db.query<{ report: Record<string, unknown> }>(
    `SELECT jsonb_build_object(
       'id', d.id, 'source', d.source, 'status', d.status, 'payloadMode', d.payload_mode, 'recipient', d.recipient,
       'envelopeFrom', d.envelope_from, 'messageId', d.message_id, 'rfcMessageId', d.rfc_message_id,
       'templateId', d.template_id, 'templateLocale', d.template_locale, 'templateHash', d.template_hash,
       'category', d.category, 'idempotencyKey', d.idempotency_key, 'attemptCount', d.attempt_count,
       'nextAttemptAt', d.next_attempt_at, 'lockedBy', d.locked_by, 'lockedUntil', d.locked_until,
       'lastError', d.last_error, 'createdAt', d.created_at, 'updatedAt', d.updated_at, 'finishedAt', d.finished_at,
       'attempts', COALESCE((SELECT jsonb_agg(jsonb_build_object(
           'attemptNumber', a.attempt_number, 'status', a.status, 'smtpCode', a.smtp_code,
           'enhancedCode', a.enhanced_code, 'smtpText', a.smtp_text, 'workerId', a.worker_id,
           'startedAt', a.started_at, 'finishedAt', a.finished_at, 'durationMs', a.duration_ms)
           ORDER BY a.attempt_number) FROM mail.attempts a WHERE a.delivery_id = d.id), '[]'::jsonb),
       'deadLetter', (SELECT jsonb_build_object('reason', dl.reason, 'createdAt', dl.created_at, 'requeuedAt', dl.requeued_at)
                        FROM mail.dead_letters dl WHERE dl.delivery_id = d.id)
     ) AS report
     FROM mail.deliveries d WHERE d.id = $1`,
    [id],
  );
  return rows[0]?.report ?? null;
}
