-- Up Migration
-- A producer's own refused commands (docs/api/graphql.md, "Whose refused commands a token reads"):
-- a token with `deliveries:read` but not `queue:read` lists `WHERE source = <its producer>` in
-- keyset order, `ORDER BY received_at, id` after a `(received_at, id)` cursor, forwards or
-- backwards (apps/api/src/schema/malformed-command.ts). The only index was (received_at), so
-- PostgreSQL walked every producer's refusals in order to find one producer's page, or read the
-- whole table and sorted it: a producer's page cost a scan of everyone's rows. The columns are the
-- list's equality, then its order and cursor, as deliveries_source_created_at_idx is for
-- deliveries: the page comes out of the index in order, the cursor is an Index Cond, nothing is
-- sorted (e2e/api/read-plans.e2e.test.ts). Rows without a readable source (NULL) are in it too and
-- never match a producer.
--
-- Locks: node-pg-migrate runs these SQL files in one transaction (packages/shared/src/db/migrate.ts),
-- where CREATE INDEX CONCURRENTLY cannot run, so this CREATE INDEX blocks writes to
-- mail.malformed_commands (not reads) while it builds: about 1.5 s per million rows on 2 vCPUs.
-- The table holds MAIL_RETENTION_AGE (30 days) of refused commands, which is small unless a producer
-- has been sending garbage at a high rate. What waits meanwhile: quarantining a refused stream
-- command (a stream entry whose insert times out stays pending and is read again, never lost), a
-- refused sendEmail's answer, and the retention purge of old rows; accepted commands and the edge
-- never write this table. Where it is large enough for that wait to matter, build the same index by
-- hand before upgrading, without blocking writes:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS malformed_commands_source_received_at_idx ON mail.malformed_commands (source, received_at, id);
-- and this migration then finds it and builds nothing (docs/deploy.md, "Upgrades"). A concurrent
-- build that failed leaves an invalid index of that name, which answers no query: it is dropped
-- and built again here rather than taken as done.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index ix
               JOIN pg_class ic ON ic.oid = ix.indexrelid
               JOIN pg_namespace ns ON ns.oid = ic.relnamespace
              WHERE ns.nspname = 'mail' AND ic.relname = 'malformed_commands_source_received_at_idx' AND NOT ix.indisvalid) THEN
    DROP INDEX mail.malformed_commands_source_received_at_idx;
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS malformed_commands_source_received_at_idx ON mail.malformed_commands (source, received_at, id);

-- Down Migration
DROP INDEX IF EXISTS mail.malformed_commands_source_received_at_idx;
