// The deliveries the core bench queues: rendered mail (a subject and a text body, no template, no
// stored message) for recipients at sink.test, the cheapest work the engine can be given, so the
// figures are about the queue, the outcome commits and the hand-over to the relay. Recipients are
// `<label>-<n>@sink.test`, so a run's mail can be told apart in the table.
import type pg from 'pg';

/** Queue `count` deliveries due now in one statement (one commit); their ids. */
export async function enqueueDeliveries(db: pg.Pool | pg.PoolClient, count: number, label: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id, status, next_attempt_at)
     SELECT 'bench', 'rendered', 'Bench ' || g, 'Hello number ' || g, $2 || '-' || g || '@sink.test', 'bench@postern.test',
            '<' || gen_random_uuid() || '@postern.test>', 'queued', now()
       FROM generate_series(1, $1::int) AS g
     RETURNING id`,
    [count, label],
  );
  return rows.map((row) => row.id);
}

/** Finished deliveries of a day ago, so every claim runs against a table of realistic size. */
export async function fillHistory(pool: pg.Pool, rows: number): Promise<void> {
  await pool.query(
    `INSERT INTO mail.deliveries (source, payload_mode, subject, text_body, recipient, envelope_from, rfc_message_id,
                                  status, attempt_count, finished_at, created_at)
     SELECT 'history', 'rendered', 's', 't', 'old' || g || '@sink.test', 'bench@postern.test',
            '<old-' || g || '@postern.test>', 'sent', 1, now() - interval '1 day', now() - interval '1 day'
       FROM generate_series(1, $1::int) AS g`,
    [rows],
  );
  await pool.query('VACUUM ANALYZE mail.deliveries');
}

/** How the given deliveries ended, e.g. { sent: 20000 }. */
export async function statusesOf(pool: pg.Pool, ids: readonly string[]): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM mail.deliveries WHERE id = ANY($1::uuid[]) GROUP BY status ORDER BY status',
    [ids],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}
