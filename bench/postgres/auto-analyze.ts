// What autovacuum's analyze would do, for a benchmark database on a server whose autovacuum is off
// (the CI machines here set `autovacuum = off`). Without it the tables the bench fills keep the
// statistics of their empty start, and every backend keeps the plans it made then: the foreign-key
// checks of each insert scan mail.messages sequentially, so accepts slow down with every row stored
// (measured: -s 20 fell from 512 to 256 messages/s over three rounds of 12,000; with this, 681–918).
// A production server analyzes by itself; ANALYZE also invalidates the cached plans, so the next
// execution is planned on the real sizes.
//
// The rule is autovacuum's own (autovacuum_analyze_threshold 50 + autovacuum_analyze_scale_factor
// 0.1 × rows), checked every 5 s instead of its 60 s naptime so that a round of a few seconds is
// measured on the plans a running system has.
import pg from 'pg';

export interface AutoAnalyze {
  /** The server's autovacuum setting, for the bench's header. */
  autovacuum: boolean;
  stop(): Promise<void>;
}

const CHECK_INTERVAL_MS = 5_000;

const DUE_TABLES_SQL = `
SELECT schemaname AS schema, relname AS table
  FROM pg_stat_user_tables
 WHERE n_mod_since_analyze > 50 + 0.1 * greatest(n_live_tup, 0)`;

/** Starts analyzing `dsn`'s tables as autovacuum would, if the server's autovacuum is off. */
export async function startAutoAnalyze(dsn: string): Promise<AutoAnalyze> {
  const client = new pg.Client({ connectionString: dsn, application_name: 'postern-bench-analyze' });
  await client.connect();
  // DROP DATABASE ... WITH (FORCE) at the end of a run terminates this connection.
  client.on('error', () => {});
  const { rows } = await client.query<{ autovacuum: string }>('SHOW autovacuum');
  const autovacuum = rows[0]?.autovacuum === 'on';
  let running: Promise<void> = Promise.resolve();
  const check = async () => {
    const due = await client.query<{ schema: string; table: string }>(DUE_TABLES_SQL);
    for (const { schema, table } of due.rows) {
      // A utility statement takes no parameters: the names are quoted as identifiers.
      await client.query(`ANALYZE ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`);
    }
  };
  const timer = autovacuum
    ? null
    : setInterval(() => {
        running = running.then(check).catch(() => {});
      }, CHECK_INTERVAL_MS);
  return {
    autovacuum,
    async stop() {
      if (timer) clearInterval(timer);
      await running;
      await client.end().catch(() => {});
    },
  };
}
