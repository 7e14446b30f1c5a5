// Deliveries put straight into the tables, in states the tests need but cannot wait days for
// (a dead letter at the end of its ladder, a retry due in an hour).
import { randomUUID } from 'node:crypto';
import type pg from 'pg';

export async function insertRenderedDelivery(
  pool: pg.Pool,
  recipient: string,
  state: { status: 'queued' | 'retrying'; dueInSeconds: number } | { status: 'dead_letter' | 'sent' },
  /** The producer it belongs to; by default one no token sends as. */
  source = 'api-test',
): Promise<string> {
  const id = randomUUID();
  const waiting = state.status === 'queued' || state.status === 'retrying';
  await pool.query(
    `INSERT INTO mail.deliveries (id, source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id,
                                  status, attempt_count, next_attempt_at, finished_at, last_error)
     VALUES ($1, $10, 'rendered', $2, 'body of the test mail', $3, 'postern@postern.test', $4,
             $5, $6, CASE WHEN $7::boolean THEN now() + make_interval(secs => $8) END,
             CASE WHEN $7::boolean THEN NULL ELSE now() END, $9)`,
    [
      id,
      `test ${id}`,
      recipient,
      `<${id}@postern.test>`,
      state.status,
      state.status === 'dead_letter' ? 3 : 0,
      waiting,
      'dueInSeconds' in state ? state.dueInSeconds : 0,
      state.status === 'dead_letter' ? 'retry ladder exhausted' : null,
      source,
    ],
  );
  if (state.status === 'dead_letter') {
    const attempt = await pool.query<{ id: string }>(
      `INSERT INTO mail.attempts (delivery_id, attempt_number, status, smtp_code, enhanced_code, smtp_text, worker_id,
                                  started_at, finished_at, duration_ms)
       VALUES ($1, 3, 'transport_failed', 451, '4.3.0', 'try later', 'core:test', now(), now(), 5) RETURNING id`,
      [id],
    );
    await pool.query('INSERT INTO mail.dead_letters (delivery_id, reason, last_attempt_id) VALUES ($1, $2, $3)', [
      id,
      'retry ladder exhausted after 3 attempts',
      attempt.rows[0]?.id,
    ]);
  }
  return id;
}
