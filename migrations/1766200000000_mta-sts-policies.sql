-- Up Migration
-- MTA-STS policies (RFC 8461) of recipient domains, as direct delivery (MAIL_SMTP_MODE=mx) last
-- fetched them: one row per domain, shared by every engine and kept across restarts, because the
-- RFC's protection against a downgrade is exactly this cache — a policy seen once is applied until
-- it expires even when the policy host or its DNS cannot be reached (an attacker who blocks the
-- fetch gains nothing). A placeholder of mode 'none' marks a policy id whose fetch failed, so the
-- engines do not ask a broken policy host again on every send for a while.
-- `policy` is the policy as mailauth returns it (id, mode, mx patterns, max_age, expires), written
-- as JSON text rather than jsonb: it comes from the internet, and jsonb refuses a \u0000 that a
-- hostile policy may carry, where text keeps JSON's escape as six plain characters.
CREATE TABLE mail.mta_sts_policies (
  domain      text PRIMARY KEY CHECK (domain = lower(domain) AND length(domain) BETWEEN 1 AND 253),
  mode        text NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
  expires_at  timestamptz NOT NULL,
  policy      text NOT NULL CHECK (length(policy) <= 1000000),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE mail.mta_sts_policies;
