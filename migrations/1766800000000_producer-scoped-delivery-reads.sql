-- Up Migration
-- Producers isolated on reads too (docs/api/graphql.md, "Scopes"): `deliveries:read` and
-- `deliveries:write` now reach the deliveries of the token's own producer only; the new
-- `deliveries:read:any` and `deliveries:write:any` reach every producer's (what the two scopes did
-- before), for operators' tokens.
--
-- Nothing an existing token could do is taken away by the upgrade: every token that held one of
-- the two scopes is given its `:any` form as well, so dashboards and scripts keep working. A
-- producer's token that should see only its own mail is narrowed by minting it again without
-- `:any` and revoking the old one (docs/api/graphql.md says how to find such tokens).
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'deliveries:read:any', 'deliveries:write:any',
  'aliases:read', 'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read',
  'dkim:read', 'dkim:write', 'routes:read', 'routes:write']::text[]);
UPDATE mail.api_tokens SET scopes = scopes || ARRAY['deliveries:read:any']
 WHERE 'deliveries:read' = ANY (scopes) AND NOT 'deliveries:read:any' = ANY (scopes);
UPDATE mail.api_tokens SET scopes = scopes || ARRAY['deliveries:write:any']
 WHERE 'deliveries:write' = ANY (scopes) AND NOT 'deliveries:write:any' = ANY (scopes);

-- Down Migration
-- The `:any` scopes go; the scopes they came with reach every producer's deliveries again. A token
-- that held only an `:any` scope gets its plain form instead.
UPDATE mail.api_tokens SET scopes = array_remove(scopes, 'deliveries:read:any') ||
       CASE WHEN 'deliveries:read' = ANY (scopes) THEN ARRAY[]::text[] ELSE ARRAY['deliveries:read'] END
 WHERE 'deliveries:read:any' = ANY (scopes);
UPDATE mail.api_tokens SET scopes = array_remove(scopes, 'deliveries:write:any') ||
       CASE WHEN 'deliveries:write' = ANY (scopes) THEN ARRAY[]::text[] ELSE ARRAY['deliveries:write'] END
 WHERE 'deliveries:write:any' = ANY (scopes);
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read',
  'dkim:read', 'dkim:write', 'routes:read', 'routes:write']::text[]);
