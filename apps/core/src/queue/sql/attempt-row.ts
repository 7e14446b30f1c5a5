// The attempt row every status change carries (seed 002: "every attempt is a row"), as the
// parameters the queue statements share.
export interface AttemptRecord {
  status: 'sent' | 'transport_failed' | 'timed_out' | 'provider_rejected' | 'outcome_unknown';
  smtpCode: number | null;
  enhancedCode: string | null;
  smtpText: string | null;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
}

/** Who holds the lease: the guard of every status change (WHERE status='sending' AND ...). */
export interface LeaseGuard {
  deliveryId: string;
  workerId: string;
  attemptNumber: number;
}

export function attemptValues(attempt: AttemptRecord): unknown[] {
  return [
    attempt.status,
    attempt.smtpCode !== null && attempt.smtpCode >= 200 && attempt.smtpCode <= 599 ? attempt.smtpCode : null,
    attempt.enhancedCode && /^[245]\.[0-9]{1,3}\.[0-9]{1,3}$/.test(attempt.enhancedCode) ? attempt.enhancedCode : null,
    attempt.smtpText?.slice(0, 1_000) ?? null,
    attempt.startedAt,
    attempt.finishedAt,
    Math.max(0, Math.round(attempt.durationMs)),
  ];
}

/** The attempt insert shared by the statements below; $1..$3 are the lease guard, $4..$10 the attempt. */
export const INSERT_ATTEMPT_FROM_D = `
  INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                             started_at, finished_at, duration_ms)
  SELECT d.id, d.attempt_count, $4, $5, $6, $7, $2, $8, $9, $10 FROM d
  RETURNING id`;
