-- Up Migration
-- What the edge found when it checked a received message's SPF, DKIM, DMARC and ARC
-- (MAIL_INBOUND_AUTH_POLICY, docs/mta.md "Inbound authentication"): auth_results is the value of
-- the Authentication-Results header it prepended to the stored message (RFC 8601, made storable),
-- auth_verdicts the same as data: {"spf", "dkim": [{"result", "domain"}], "dmarc", "dmarcPolicy",
-- "dmarcDomain", "arc", "incomplete"?}. Both NULL when nothing was checked (policy off, or a message
-- an older edge accepted), so the previous release, which does not write them, runs unchanged.
--
-- Locks: ADD COLUMN without a default changes only the catalog.
ALTER TABLE mail.messages ADD COLUMN auth_results text;
ALTER TABLE mail.messages ADD COLUMN auth_verdicts jsonb;

-- Down Migration
ALTER TABLE mail.messages DROP COLUMN auth_verdicts;
ALTER TABLE mail.messages DROP COLUMN auth_results;
