-- Up Migration
-- Shaping per destination site in mx mode (docs/core.md, "Shaping"): the limits every engine shares.
-- A site is the sorted set of MX host names a recipient domain resolves to (its key is written by
-- apps/core/src/relay/site-key.ts); all three tables are new and small, so nothing busy is locked.

-- Connection slots: a site may have at most N connections open across all engines, one row per
-- slot 0..N-1. A slot is free when its lease ran out (expires_at <= now()); an engine claims one
-- with FOR UPDATE SKIP LOCKED and renews the lease while its connection is open, so the slots of
-- an engine that crashed free themselves when their lease expires.
CREATE TABLE mail.site_slots (
  site        text NOT NULL CHECK (length(site) BETWEEN 1 AND 300),
  slot        integer NOT NULL CHECK (slot >= 0),
  -- engine id and a per-connection id: renewals and releases touch only the holder's own rows.
  holder      text,
  expires_at  timestamptz NOT NULL DEFAULT '-infinity',
  PRIMARY KEY (site, slot)
);

-- The message rate of a site: a token bucket, refilled by elapsed time when a token is taken.
CREATE TABLE mail.site_buckets (
  site         text PRIMARY KEY CHECK (length(site) BETWEEN 1 AND 300),
  tokens       double precision NOT NULL,
  refilled_at  timestamptz NOT NULL DEFAULT now()
);

-- A site that refused connections or greeted with an error on every MX host: no engine connects to
-- it before `until`; failures in a row make the next backoff longer; a session set up clears it.
CREATE TABLE mail.site_backoffs (
  site        text PRIMARY KEY CHECK (length(site) BETWEEN 1 AND 300),
  until       timestamptz NOT NULL,
  failures    integer NOT NULL CHECK (failures >= 1),
  reason      text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE mail.site_backoffs;
DROP TABLE mail.site_buckets;
DROP TABLE mail.site_slots;
