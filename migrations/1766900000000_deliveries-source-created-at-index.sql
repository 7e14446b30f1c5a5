-- Up Migration
-- A producer's own list of deliveries (docs/api/graphql.md, "Whose deliveries a token reaches"):
-- a token with `deliveries:read` but not `:any` lists `WHERE source = <its producer>` in keyset
-- order, `ORDER BY created_at, id` after a `(created_at, id)` cursor, forwards or backwards
-- (apps/api/src/schema/delivery.ts). No index led with source, so PostgreSQL walked the
-- (created_at, id) index past every other producer's rows, or read the whole table and sorted it:
-- with a million deliveries, 150-220 ms per page for a producer with few of them (a new service's
-- token) against 0.1-2 ms with this index (docs/api/graphql.md, "A producer's own list"). The
-- columns are the list's equality, then its order and cursor: the index hands the page over in
-- order, the cursor is an Index Cond, nothing is sorted.
--
-- Locks: node-pg-migrate runs these SQL files in one transaction (packages/shared/src/db/migrate.ts),
-- where CREATE INDEX CONCURRENTLY cannot run, so this CREATE INDEX blocks writes to mail.deliveries
-- (not reads) while it builds: about 2.6 s per million rows on 2 vCPUs. On a table large enough for
-- that pause to matter, build the same index by hand before upgrading, without blocking writes:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS deliveries_source_created_at_idx ON mail.deliveries (source, created_at, id);
-- and this migration then finds it and builds nothing (docs/deploy.md, "Upgrades"). A concurrent
-- build that failed leaves an invalid index of that name, which answers no query: it is dropped
-- and built again here rather than taken as done.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index ix
               JOIN pg_class ic ON ic.oid = ix.indexrelid
               JOIN pg_namespace ns ON ns.oid = ic.relnamespace
              WHERE ns.nspname = 'mail' AND ic.relname = 'deliveries_source_created_at_idx' AND NOT ix.indisvalid) THEN
    DROP INDEX mail.deliveries_source_created_at_idx;
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS deliveries_source_created_at_idx ON mail.deliveries (source, created_at, id);

-- Down Migration
DROP INDEX IF EXISTS mail.deliveries_source_created_at_idx;
