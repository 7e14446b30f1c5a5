-- Up Migration
-- When a site's outage began (docs/core.md, "Shaping"; the gauge mail_sites_backed_off_longest_ms
-- and the alert PosternSiteBackedOffLong read it): set when the row is made, at the first failure
-- of the outage, and left alone by the failures that lengthen the backoff (site-store.ts's
-- BACK_OFF_SQL names only until, failures, reason and updated_at); the row is deleted when a
-- session is set up, so the next outage starts a new one. `updated_at` is the latest failure, not
-- the first, and `until` doubles away from it: neither tells how long the site has been down.
--
-- Rows backed off before this migration start their outage at the migration: their age is under-
-- reported by the time they had already waited, never over-reported.
--
-- Locks: now() is not volatile, so ADD COLUMN stores one value for the existing rows in the
-- catalogue instead of rewriting the table: a brief ACCESS EXCLUSIVE lock, no scan.
ALTER TABLE mail.site_backoffs ADD COLUMN since timestamptz NOT NULL DEFAULT now();

-- Down Migration
ALTER TABLE mail.site_backoffs DROP COLUMN since;
