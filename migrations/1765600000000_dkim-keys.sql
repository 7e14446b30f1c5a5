-- Up Migration
-- DKIM keys per signing domain: mail Postern originates (templates, rendered API mail, bounces) is
-- signed with the active key of its From domain (docs/core.md, "DKIM signing"). The domain is any
-- domain Postern writes From: in, not only one in mail.domains (which makes the edge answer for it).
-- The private key is stored only sealed with MAIL_SECRETS_KEY (AES-256-GCM, bound to the domain and
-- selector: packages/shared/src/dkim/sealed-key.ts), and destroyed when the key is retired.
--   pending     created ahead of a rotation: its record is published, it does not sign yet
--   active      signs; at most one per domain
--   superseded  replaced by a rotation: signs no more, its record stays until mail signed with it
--               has been verified
--   retired     private key destroyed; its record can be removed from DNS
CREATE TABLE mail.dkim_keys (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain              text NOT NULL
                      CHECK (domain = lower(domain) AND length(domain) BETWEEN 1 AND 253
                             AND domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
  selector            text NOT NULL
                      CHECK (selector = lower(selector) AND length(selector) BETWEEN 1 AND 63
                             AND selector ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
  key_type            text NOT NULL CHECK (key_type IN ('rsa2048', 'ed25519')),
  -- The p= value of the DNS record: base64 of the SubjectPublicKeyInfo (RSA) or of the 32-byte key (Ed25519, RFC 8463).
  public_key          text NOT NULL CHECK (public_key ~ '^[A-Za-z0-9+/]+=*$'),
  private_key_sealed  bytea,
  status              text NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'retired')),
  created_at          timestamptz NOT NULL DEFAULT now(),
  activated_at        timestamptz,
  superseded_at       timestamptz,
  retired_at          timestamptz,
  -- A selector is never reused for a domain: resolvers may still cache the old record.
  UNIQUE (domain, selector),
  CHECK ((status = 'retired') = (private_key_sealed IS NULL)),
  CHECK ((status = 'active') <= (activated_at IS NOT NULL)),
  CHECK ((status = 'retired') = (retired_at IS NOT NULL))
);
CREATE UNIQUE INDEX dkim_keys_one_active_idx ON mail.dkim_keys (domain) WHERE status = 'active';
CREATE INDEX dkim_keys_created_idx ON mail.dkim_keys (created_at, id);

-- DKIM keys get a scope pair of their own, like every other resource of the API.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read',
  'dkim:read', 'dkim:write']::text[]);

-- Down Migration
-- NOT VALID: tokens that already hold a DKIM scope are kept; only new rows get the old list.
ALTER TABLE mail.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE mail.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
  'suppressions:write', 'queue:read', 'attempts:read', 'content:read', 'commands:raw:read']::text[]) NOT VALID;
DROP TABLE mail.dkim_keys;
