-- Up Migration
-- The queue lifetime (docs/core.md, "The queue lifetime"; MAIL_QUEUE_LIFETIME): a delivery still
-- waiting longer than it after `queued_since` is dead-lettered and bounced instead of being put back
-- to wait again — a deferral (site shaping, a backed-off relay) or an unusable DKIM key gives its
-- attempt number back and never spends the ladder, so without it such mail waited for ever.
-- `queued_since` is when the delivery entered the queue: its insert (the default), or the operator's
-- requeue of its dead letter (requeue-dead-letters.ts sets it), which starts a new lifetime. The
-- engine reads it in the claim statement it already runs (claim-deliveries.ts): no extra query.
--
-- Rows queued before this migration start their lifetime at the migration (now() of its
-- transaction), not at created_at: an upgrade gives a backlog that already waited days its full
-- lifetime rather than dead-lettering it all at the first deferral after the deploy.
--
-- Locks: now() is not volatile, so ADD COLUMN stores one value for the existing rows in the
-- catalogue instead of rewriting the table: a brief ACCESS EXCLUSIVE lock, no scan.
ALTER TABLE mail.deliveries ADD COLUMN queued_since timestamptz NOT NULL DEFAULT now();

-- Down Migration
ALTER TABLE mail.deliveries DROP COLUMN queued_since;
