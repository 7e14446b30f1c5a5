// Forces the race between identical commands instead of hoping for it. A transaction of the test
// holds the reservation of (source, key) uncommitted, so the first command blocks on its
// reservation insert with its delivery row inserted and uncommitted, and every other identical
// command passes its reservation lookup (nothing committed) and blocks on that delivery row. Once
// `waiting` sessions wait on a lock the test's transaction rolls back: the first commits, the
// others find its row taken. Used for commands over GraphQL and over the stream alike.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { lockWaiters, waitFor } from '../../harness/index.ts';

const HOLDER_DELIVERY_SQL = `INSERT INTO mail.deliveries (id, source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
  VALUES ($1, 'race-holder', 'rendered', 's', 't', 'holder@customers.test', 'postern@postern.test', $2, 'queued', now() + interval '1 day')`;

const HELD_RESERVATION_SQL = `INSERT INTO mail.idempotency_reservations (source, idempotency_key, request_hash, delivery_id)
  VALUES ($1, $2, 'held-by-the-test', $3)`;

/** Runs `run` while (source, key) is held, and lets go once `waiting` sessions wait on the held rows. */
export async function whileReservationHeld<T>(pool: pg.Pool, source: string, key: string, waiting: number, run: () => Promise<T>): Promise<T> {
  const holder = await pool.connect();
  let running: Promise<T> | undefined;
  try {
    await holder.query('BEGIN');
    const blocker = randomUUID();
    await holder.query(HOLDER_DELIVERY_SQL, [blocker, `<${blocker}@postern.test>`]);
    await holder.query(HELD_RESERVATION_SQL, [source, key, blocker]);
    running = run();
    running.catch(() => undefined);
    await waitFor(
      `${waiting} sessions waiting on the held rows`,
      () => lockWaiters(pool),
      (count) => count >= waiting,
      { timeoutMs: 30_000 },
    );
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    holder.release();
  }
  return running as Promise<T>;
}
