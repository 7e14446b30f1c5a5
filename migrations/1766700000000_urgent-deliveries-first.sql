-- Up Migration
-- Urgent mail first (docs/core.md, "Urgent mail first"): a delivery of an urgent category (login
-- codes, password resets: MAIL_URGENT_CATEGORIES) is claimed before every other due delivery, so a
-- backlog of bulk mail — a producer queueing a million notifications — no longer holds back the
-- mail someone is waiting for at a login screen. priority 0 is urgent, 1 everything else (the
-- column's default: what the edge accepts, bounces, and deliveries queued before this migration).
--
-- Locks: adding the column with a constant default does not rewrite the table. The CHECK is added
-- NOT VALID and validated separately, which scans the table without blocking writes. CREATE INDEX
-- (not CONCURRENTLY: migrations run in a transaction) blocks writes to mail.deliveries while it
-- builds — it scans the whole table but indexes only the waiting rows; expect seconds per million
-- rows. The old due index is dropped after the new one exists.
ALTER TABLE mail.deliveries ADD COLUMN priority smallint NOT NULL DEFAULT 1;
ALTER TABLE mail.deliveries ADD CONSTRAINT deliveries_priority_known CHECK (priority IN (0, 1)) NOT VALID;
ALTER TABLE mail.deliveries VALIDATE CONSTRAINT deliveries_priority_known;
-- The scheduler's claim: due rows in the claimable statuses, urgent first, then oldest first.
CREATE INDEX deliveries_due_idx_priority ON mail.deliveries (priority, next_attempt_at)
  WHERE status IN ('queued', 'retrying');
DROP INDEX mail.deliveries_due_idx;
ALTER INDEX mail.deliveries_due_idx_priority RENAME TO deliveries_due_idx;

-- Down Migration
CREATE INDEX deliveries_due_idx_oldest ON mail.deliveries (next_attempt_at)
  WHERE status IN ('queued', 'retrying');
DROP INDEX mail.deliveries_due_idx;
ALTER INDEX mail.deliveries_due_idx_oldest RENAME TO deliveries_due_idx;
ALTER TABLE mail.deliveries DROP CONSTRAINT deliveries_priority_known;
ALTER TABLE mail.deliveries DROP COLUMN priority;
