-- Up Migration
-- Producer isolation. Without it any `send` token could write under any `source`, so one
-- producer could take another's idempotency keys (its real send then refused as a conflict naming
-- a delivery id) and read the other's delivery through a `duplicate` answer. A token now carries the
-- one producer it sends as; sendEmail uses it and refuses any other `source`. Tokens that exist
-- already keep what they did by default: they sent as "api:<name>", so that is their producer.
-- "api:<name>" stays reserved to the token of that name, so no token can take another's default;
-- "smtp" and "postern-dsn" name the deliveries Postern itself creates (the edge, bounces).
ALTER TABLE mail.api_tokens ADD COLUMN producer text;
UPDATE mail.api_tokens SET producer = 'api:' || name;
ALTER TABLE mail.api_tokens ALTER COLUMN producer SET NOT NULL;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_producer_check CHECK (
  producer ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$'
  AND producer NOT IN ('smtp', 'postern-dsn')
  AND (producer NOT LIKE 'api:%' OR producer = 'api:' || name));

-- Nested fields carry the scope of what they expose: attempts (relay replies), message content
-- (subjects) and refused commands' raw text (which can hold login codes) get scopes of their own.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read']::text[]);

-- Down Migration
-- NOT VALID: tokens that already hold one of the new scopes are kept; only new rows get the old list.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read']::text[]) NOT VALID;
ALTER TABLE mail.api_tokens DROP COLUMN producer;
