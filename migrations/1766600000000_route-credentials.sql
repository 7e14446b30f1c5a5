-- Up Migration
-- Credentials for a routed relay that wants SMTP AUTH (docs/core.md, "Routes"): the username as
-- given, the password sealed with MAIL_SECRETS_KEY and bound to the route's domain and the username
-- (packages/shared/src/routes/route-credentials.ts), never stored or shown in the clear. Both or
-- neither; only on a route to a relay host whose TLS is required, so a password is only ever sent
-- over TLS with a certificate that verifies for the relay's name.
ALTER TABLE mail.routes ADD COLUMN auth_username text
  CHECK (length(auth_username) BETWEEN 1 AND 255 AND auth_username !~ '[[:cntrl:]]');
ALTER TABLE mail.routes ADD COLUMN auth_password_sealed bytea;
ALTER TABLE mail.routes ADD CONSTRAINT routes_auth_whole
  CHECK ((auth_username IS NULL) = (auth_password_sealed IS NULL));
ALTER TABLE mail.routes ADD CONSTRAINT routes_auth_over_verified_tls
  CHECK (auth_username IS NULL OR (relay_host IS NOT NULL AND tls = 'required'));

-- Down Migration
ALTER TABLE mail.routes DROP CONSTRAINT routes_auth_over_verified_tls;
ALTER TABLE mail.routes DROP CONSTRAINT routes_auth_whole;
ALTER TABLE mail.routes DROP COLUMN auth_password_sealed;
ALTER TABLE mail.routes DROP COLUMN auth_username;
