-- Up Migration
-- The W3C trace context (traceparent, version 00) a message and each delivery continue: the edge
-- stores its accept span's, the intake its stream command's or sendEmail's, a bounce the failed
-- attempt's. The engine starts every attempt's spans under it, so one message is one trace from
-- the SMTP session to the relay's reply even when an attempt runs hours later on another engine
-- (docs/observability.md). NULL where the writer did not trace and was given no context.
--
-- Locks: ADD COLUMN without a default changes only the catalog. The format checks are added NOT
-- VALID: every row written from now on is checked, and the rows already there are all NULL, so
-- validating them would only scan both tables under the ACCESS EXCLUSIVE lock ADD COLUMN holds.
ALTER TABLE mail.messages ADD COLUMN traceparent text;
ALTER TABLE mail.messages ADD CONSTRAINT messages_traceparent_format
  CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$') NOT VALID;
ALTER TABLE mail.deliveries ADD COLUMN traceparent text;
ALTER TABLE mail.deliveries ADD CONSTRAINT deliveries_traceparent_format
  CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$') NOT VALID;

-- Down Migration
ALTER TABLE mail.deliveries DROP COLUMN traceparent;
ALTER TABLE mail.messages DROP COLUMN traceparent;
