// Invalid states are unrepresentable in the schema itself, whoever writes (an app, the CLI, psql).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../harness/index.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('schema-invariants');
});
afterAll(async () => {
  await db?.drop();
});

async function rejects(sql: string, params: unknown[], constraintOrMessage: RegExp): Promise<void> {
  await expect(db.pool.query(sql, params)).rejects.toThrow(constraintOrMessage);
}

interface DeliveryFields {
  payload_mode: string;
  recipient: string;
  status: string;
  next_attempt_at: Date | null;
  finished_at: Date | null;
}

// One constant statement; each test varies only the values that make the row invalid.
const INSERT_DELIVERY_SQL = `
INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, rfc_message_id, status,
                             next_attempt_at, finished_at)
VALUES ('api', $1, 's', 't', $2, $3, $4, $5, $6)
RETURNING id`;

async function insertDelivery(overrides: Partial<DeliveryFields> = {}): Promise<string> {
  const row: DeliveryFields = {
    payload_mode: 'rendered',
    recipient: 'someone@example.test',
    status: 'queued',
    next_attempt_at: new Date(),
    finished_at: null,
    ...overrides,
  };
  const { rows } = await db.pool.query<{ id: string }>(INSERT_DELIVERY_SQL, [
    row.payload_mode,
    row.recipient,
    `<${Math.random().toString(36).slice(2)}@postern.test>`,
    row.status,
    row.next_attempt_at,
    row.finished_at,
  ]);
  return rows[0]!.id;
}

describe('schema invariants', () => {
  it('addresses are unique case-insensitively because they are stored lower-case only', async () => {
    const { rows } = await db.pool.query<{ id: string }>(`INSERT INTO mail.domains (name) VALUES ('example.test') RETURNING id`);
    const domainId = rows[0]!.id;
    await rejects(`INSERT INTO mail.domains (name) VALUES ('Example.TEST')`, [], /domains_name_check/);
    await db.pool.query(`INSERT INTO mail.aliases (domain_id, local_part, kind) VALUES ($1, 'info', 'forward')`, [domainId]);
    await rejects(`INSERT INTO mail.aliases (domain_id, local_part, kind) VALUES ($1, 'Info', 'forward')`, [domainId], /aliases_local_part_check/);
    await rejects(`INSERT INTO mail.aliases (domain_id, local_part, kind) VALUES ($1, 'info', 'list')`, [domainId], /aliases_domain_local_part_key/);
    // At most one catch-all per domain.
    await db.pool.query(`INSERT INTO mail.aliases (domain_id, local_part, kind) VALUES ($1, NULL, 'forward')`, [domainId]);
    await rejects(`INSERT INTO mail.aliases (domain_id, local_part, kind) VALUES ($1, NULL, 'forward')`, [domainId], /aliases_domain_local_part_key/);
  });

  it('statuses are checked and each status has its shape', async () => {
    await expect(insertDelivery({ status: 'delivered' })).rejects.toThrow(/deliveries_status_check/);
    // Waiting without a due time, leased without a holder, finished without a time: all refused.
    await expect(insertDelivery({ next_attempt_at: null })).rejects.toThrow(/deliveries_waiting_is_scheduled/);
    await expect(insertDelivery({ status: 'sending', next_attempt_at: null })).rejects.toThrow(/deliveries_sending_is_leased/);
    await expect(insertDelivery({ status: 'sent', next_attempt_at: null })).rejects.toThrow(/deliveries_terminal_is_finished/);
    await expect(insertDelivery({ payload_mode: 'template' })).rejects.toThrow(/deliveries_template_has_template/);
    await expect(insertDelivery({ recipient: 'Someone@Example.test' })).rejects.toThrow(/deliveries_recipient_check/);
  });

  it('at most one dead-letter row per delivery, and idempotency keys are unique per source', async () => {
    const id = await insertDelivery({ status: 'dead_letter', next_attempt_at: null, finished_at: new Date() });
    await db.pool.query(`INSERT INTO mail.dead_letters (delivery_id, reason) VALUES ($1, 'ladder exhausted')`, [id]);
    await rejects(`INSERT INTO mail.dead_letters (delivery_id, reason) VALUES ($1, 'again')`, [id], /dead_letters_delivery_id_key/);

    const other = await insertDelivery();
    await db.pool.query(
      `INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id) VALUES ('billing', 'k1', 'h', $1)`,
      [other],
    );
    await rejects(
      `INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id) VALUES ('billing', 'k1', 'h2', $1)`,
      [other],
      /idempotency_reservations_pkey/,
    );
    // The same key from another source is another command.
    await db.pool.query(
      `INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id) VALUES ('crm', 'k1', 'h', $1)`,
      [other],
    );
  });

  it('a new due delivery announces itself (NOTIFY mail_delivery_due) on commit', async () => {
    const listener = await db.pool.connect();
    try {
      const notified = new Promise<string>((resolve) => listener.once('notification', (message) => resolve(message.channel)));
      await listener.query('LISTEN mail_delivery_due');
      await insertDelivery();
      await expect(notified).resolves.toBe('mail_delivery_due');
    } finally {
      listener.release();
    }
  });

  it('a delivery rescheduled for later does not announce itself; one due now does', async () => {
    const later = await insertDelivery({ next_attempt_at: new Date(Date.now() + 3_600_000) });
    const due = await insertDelivery({ next_attempt_at: new Date(Date.now() + 3_600_000) });
    const listener = await db.pool.connect();
    const payloads: string[] = [];
    const heard = (message: { payload?: string }) => payloads.push(message.payload ?? '');
    try {
      listener.on('notification', heard);
      await listener.query('LISTEN mail_delivery_due');
      // What the outcome statement does to a retry: retrying, due in a minute; then a retry with no
      // wait; then a marker of our own. Notifications arrive in commit order: once the marker is
      // heard, whatever the two updates announced has been heard before it.
      const reschedule = `UPDATE mail.deliveries SET status = 'retrying', next_attempt_at = now() + $2::int * interval '1 second' WHERE id = $1`;
      await db.pool.query(reschedule, [later, 60]);
      await db.pool.query(reschedule, [due, 0]);
      await db.pool.query(`SELECT pg_notify('mail_delivery_due', 'marker')`);
      await expect.poll(() => payloads.includes('marker'), { timeout: 5_000 }).toBe(true);
      expect(payloads).toEqual(['', 'marker']);
    } finally {
      await listener.query('UNLISTEN mail_delivery_due');
      listener.off('notification', heard);
      listener.release();
    }
  });

  it('tokens are stored as hashes with known scopes only', async () => {
    await rejects(
      `INSERT INTO mail.api_tokens (name, token_hash, scopes, producer) VALUES ('ops', 'plaintext-token', ARRAY['admin'], 'ops')`,
      [],
      /api_tokens_token_hash_check/,
    );
    await rejects(
      `INSERT INTO mail.api_tokens (name, token_hash, scopes, producer) VALUES ('ops', repeat('a', 64), ARRAY['root'], 'ops')`,
      [],
      /api_tokens_scopes_check/,
    );
  });

  it('a token carries one producer: never the edge, the bounces, or another token\'s default "api:<name>"', async () => {
    for (const producer of ['smtp', 'postern-dsn', 'api:someone-else', 'has space', '']) {
      await rejects(
        `INSERT INTO mail.api_tokens (name, token_hash, scopes, producer) VALUES ('ops', repeat('b', 64), ARRAY['send'], $1)`,
        [producer],
        /api_tokens_producer_check/,
      );
    }
    await rejects(`INSERT INTO mail.api_tokens (name, token_hash, scopes) VALUES ('ops', repeat('b', 64), ARRAY['send'])`, [], /producer/);
  });
});
