-- Up Migration
-- Per-domain routes, like Postfix's transport map: where the engine sends a recipient domain's
-- mail instead of what MAIL_SMTP_MODE says (docs/core.md, "Routes"). A route names a recipient
-- domain, exactly ("example.com": that domain only) or as a parent ("." first, ".example.com":
-- every subdomain of example.com, not example.com itself), and a relay: a host and port, or
-- neither (direct delivery to the domain's MX hosts). The engine picks exact over the longest
-- parent over the default, at send time (packages/shared/src/routes/).
--   tls  opportunistic  STARTTLS when offered, an unverified certificate still used
--        required       STARTTLS (or TLS on 465) with a certificate that verifies, or no send (deferred)
-- Credentials for a routed relay are not stored: a route to a relay that wants AUTH is not possible yet.
CREATE TABLE mail.routes (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain      text NOT NULL UNIQUE
              CHECK (domain = lower(domain) AND length(domain) BETWEEN 1 AND 254
                     AND domain ~ '^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
  -- NULL (with relay_port): direct delivery to the domain's MX hosts.
  relay_host  text CHECK (length(relay_host) BETWEEN 1 AND 253 AND relay_host ~ '^[a-z0-9.:-]+$'),
  relay_port  integer CHECK (relay_port BETWEEN 1 AND 65535),
  tls         text NOT NULL DEFAULT 'opportunistic' CHECK (tls IN ('opportunistic', 'required')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((relay_host IS NULL) = (relay_port IS NULL)),
  -- Direct delivery's TLS is opportunistic here; verified-only direct delivery is MTA-STS's.
  CHECK (relay_host IS NOT NULL OR tls = 'opportunistic')
);
-- The API lists routes by (created_at, id), as every list.
CREATE INDEX routes_created_idx ON mail.routes (created_at, id);

-- The route an attempt took, as the engine chose it when it sent: which route matched (NULL: none,
-- the default of MAIL_SMTP_MODE), the relay it named ("mx" for direct delivery, else host:port)
-- and its TLS requirement. Written with the attempt, never changed; NULL for attempts without a
-- send (outcome_unknown rows of the lease reclaim) and for those made before this column.
-- Locks: ADD COLUMN without a default changes only the catalog.
ALTER TABLE mail.attempts ADD COLUMN route_domain text;
ALTER TABLE mail.attempts ADD COLUMN route_relay text;
ALTER TABLE mail.attempts ADD COLUMN route_tls text;

-- Routes get a scope pair of their own, like every other resource of the API.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read',
  'dkim:read', 'dkim:write', 'routes:read', 'routes:write']::text[]);

-- Down Migration
-- NOT VALID: tokens that already hold a routes scope are kept; only new rows get the old list.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read',
  'dkim:read', 'dkim:write']::text[]) NOT VALID;
ALTER TABLE mail.attempts DROP COLUMN route_tls;
ALTER TABLE mail.attempts DROP COLUMN route_relay;
ALTER TABLE mail.attempts DROP COLUMN route_domain;
DROP TABLE mail.routes;
