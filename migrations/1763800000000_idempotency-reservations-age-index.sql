-- Up Migration
-- The retention loop purges idempotency reservations older than MAIL_IDEMPOTENCY_WINDOW in small
-- batches, oldest first; without this index every batch scans the whole table.
CREATE INDEX idempotency_reservations_created_at_idx ON mail.idempotency_reservations (created_at);

-- Down Migration
DROP INDEX mail.idempotency_reservations_created_at_idx;
