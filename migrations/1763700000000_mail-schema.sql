-- Up Migration
--
-- The whole durable state of Postern lives in schema `mail`. Invalid states are made unrepresentable
-- here, not only in application code: every status is a CHECK, every reference a foreign key, and
-- addresses are stored in one normal form (lower-case local part, lower-case ASCII/punycode domain)
-- so that lookups and uniqueness agree (stale-alias-table: an address must mean the same thing everywhere).

CREATE SCHEMA IF NOT EXISTS mail;

-- ---------------------------------------------------------------------------------------------
-- Domains and aliases: the live tables the SMTP edge reads on every RCPT (no generated files).
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.domains (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- ASCII form (IDNs as punycode), lower case, no trailing dot.
  name        text NOT NULL UNIQUE
              CHECK (name = lower(name) AND length(name) BETWEEN 1 AND 253
                     AND name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
  enabled     boolean NOT NULL DEFAULT true,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mail.aliases (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  domain_id   bigint NOT NULL REFERENCES mail.domains (id) ON DELETE CASCADE,
  -- NULL is the domain's catch-all; otherwise the lower-cased local part.
  local_part  text CHECK (local_part IS NULL
                          OR (local_part = lower(local_part) AND length(local_part) BETWEEN 1 AND 64)),
  -- forward: relay to its target(s); list: fan out to every member target.
  kind        text NOT NULL CHECK (kind IN ('forward', 'list')),
  enabled     boolean NOT NULL DEFAULT true,
  description text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One alias per (domain, local part), and at most one catch-all per domain (NULLS NOT DISTINCT).
CREATE UNIQUE INDEX aliases_domain_local_part_key
  ON mail.aliases (domain_id, local_part) NULLS NOT DISTINCT;

CREATE TABLE mail.alias_targets (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  alias_id    bigint NOT NULL REFERENCES mail.aliases (id) ON DELETE CASCADE,
  -- A full normalised address: lower-case local part '@' lower-case ASCII domain.
  address     text NOT NULL CHECK (address = lower(address) AND address ~ '^[^@\s]+@[^@\s]+$'
                                   AND length(address) <= 320),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (alias_id, address)
);
CREATE INDEX alias_targets_alias_id_idx ON mail.alias_targets (alias_id);

-- Every change to the alias tables is announced, whoever makes it (API, CLI, psql), so that an
-- edge holding a positive cache drops the entry the moment it changes. Payload: the domain id.
CREATE FUNCTION mail.notify_alias_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed_domain bigint;
BEGIN
  IF TG_TABLE_NAME = 'domains' THEN
    changed_domain := COALESCE(NEW.id, OLD.id);
  ELSIF TG_TABLE_NAME = 'aliases' THEN
    changed_domain := COALESCE(NEW.domain_id, OLD.domain_id);
  ELSE
    SELECT a.domain_id INTO changed_domain FROM mail.aliases a
     WHERE a.id = COALESCE(NEW.alias_id, OLD.alias_id);
  END IF;
  PERFORM pg_notify('mail_alias_changed', COALESCE(changed_domain::text, ''));
  RETURN NULL;
END;
$$;
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE ON mail.domains
  FOR EACH ROW EXECUTE FUNCTION mail.notify_alias_changed();
CREATE TRIGGER aliases_notify AFTER INSERT OR UPDATE OR DELETE ON mail.aliases
  FOR EACH ROW EXECUTE FUNCTION mail.notify_alias_changed();
CREATE TRIGGER alias_targets_notify AFTER INSERT OR UPDATE OR DELETE ON mail.alias_targets
  FOR EACH ROW EXECUTE FUNCTION mail.notify_alias_changed();

-- ---------------------------------------------------------------------------------------------
-- Messages the edge accepted: header facts and the raw bytes, stored before "250 queued".
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.messages (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  received_at       timestamptz NOT NULL DEFAULT now(),
  -- '' is the null reverse-path (<>): bounces are never sent to it.
  envelope_from     text NOT NULL CHECK (length(envelope_from) <= 320),
  envelope_to       text[] NOT NULL CHECK (cardinality(envelope_to) >= 1),
  client_address    inet,
  client_hostname   text,
  helo              text,
  smtputf8          boolean NOT NULL DEFAULT false,
  message_id_header text,
  subject           text,
  from_header       text,
  size_bytes        bigint NOT NULL CHECK (size_bytes >= 0)
);
CREATE INDEX messages_received_at_idx ON mail.messages (received_at);

CREATE TABLE mail.message_payloads (
  message_id  uuid PRIMARY KEY REFERENCES mail.messages (id) ON DELETE CASCADE,
  -- The exact bytes received (with the edge's Received: trace header prepended).
  raw         bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Deliveries: one per (message or command, recipient). The queue the engine claims from.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.deliveries (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Who asked: 'smtp' (the edge), 'api', or the producer named in a stream command.
  source            text NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
  idempotency_key   text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
  -- relay: bytes of a received message; template: rendered at send time; rendered: given content.
  payload_mode      text NOT NULL CHECK (payload_mode IN ('relay', 'template', 'rendered')),
  message_id        uuid REFERENCES mail.messages (id) ON DELETE SET NULL,
  template_id       text,
  template_locale   text,
  template_hash     text,
  template_variables jsonb,
  subject           text,
  text_body         text,
  html_body         text,
  -- Some deliveries are of a kind the runbook's stub mode suppresses (auth sessions, login codes).
  category          text,
  recipient         text NOT NULL CHECK (recipient = lower(recipient) AND recipient ~ '^[^@\s]+@[^@\s]+$'
                                         AND length(recipient) <= 320),
  envelope_from     text NOT NULL DEFAULT '' CHECK (length(envelope_from) <= 320),
  -- One stable Message-ID per delivery, the same on every attempt.
  rfc_message_id    text NOT NULL UNIQUE,
  status            text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'retrying', 'sending', 'sent', 'failed',
                                      'dead_letter', 'suppressed', 'cancelled')),
  attempt_count     integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  next_attempt_at   timestamptz,
  locked_by         text,
  locked_until      timestamptz,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  finished_at       timestamptz,

  -- The shape of each payload mode.
  CONSTRAINT deliveries_relay_has_message
    CHECK (payload_mode <> 'relay' OR message_id IS NOT NULL OR status IN ('sent', 'failed', 'dead_letter', 'suppressed', 'cancelled')),
  CONSTRAINT deliveries_template_has_template
    CHECK (payload_mode <> 'template' OR (template_id IS NOT NULL AND template_locale IS NOT NULL AND template_hash IS NOT NULL)),
  CONSTRAINT deliveries_rendered_has_content
    CHECK (payload_mode <> 'rendered' OR (subject IS NOT NULL AND (text_body IS NOT NULL OR html_body IS NOT NULL))),
  -- Waiting statuses are due at some time; 'sending' is a lease; terminal statuses are neither.
  CONSTRAINT deliveries_waiting_is_scheduled
    CHECK ((status IN ('queued', 'retrying')) = (next_attempt_at IS NOT NULL)),
  CONSTRAINT deliveries_sending_is_leased
    CHECK ((status = 'sending') = (locked_by IS NOT NULL AND locked_until IS NOT NULL)),
  CONSTRAINT deliveries_terminal_is_finished
    CHECK ((status IN ('sent', 'failed', 'dead_letter', 'suppressed', 'cancelled')) = (finished_at IS NOT NULL)),
  CONSTRAINT deliveries_idempotency_needs_source
    CHECK (idempotency_key IS NULL OR source <> 'smtp')
);
-- The scheduler's claim: due rows in the claimable statuses, oldest first.
CREATE INDEX deliveries_due_idx ON mail.deliveries (next_attempt_at)
  WHERE status IN ('queued', 'retrying');
-- Expired leases (a dead or stalled engine) are claimable again.
CREATE INDEX deliveries_lease_idx ON mail.deliveries (locked_until)
  WHERE status = 'sending';
CREATE INDEX deliveries_message_id_idx ON mail.deliveries (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX deliveries_recipient_idx ON mail.deliveries (recipient, created_at);
CREATE INDEX deliveries_created_at_idx ON mail.deliveries (created_at, id);
CREATE INDEX deliveries_status_created_at_idx ON mail.deliveries (status, created_at);

-- New due work wakes idle engines at once instead of waiting for their polling interval.
-- pg_notify de-duplicates identical notifications within a transaction: one per commit.
CREATE FUNCTION mail.notify_delivery_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mail_delivery_due', '');
  RETURN NULL;
END;
$$;
CREATE TRIGGER deliveries_notify_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON mail.deliveries
  FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying'))
  EXECUTE FUNCTION mail.notify_delivery_due();

-- Every attempt is a row: what happened, the SMTP reply, how long it took.
CREATE TABLE mail.attempts (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id     uuid NOT NULL REFERENCES mail.deliveries (id) ON DELETE CASCADE,
  attempt_number  integer NOT NULL CHECK (attempt_number >= 1),
  -- outcome_unknown: the data went out but no reply came (timeout after DATA, lease lost).
  status          text NOT NULL CHECK (status IN ('sent', 'transport_failed', 'timed_out',
                                                  'provider_rejected', 'outcome_unknown')),
  smtp_code       integer CHECK (smtp_code BETWEEN 200 AND 599),
  enhanced_code   text CHECK (enhanced_code ~ '^[245]\.[0-9]{1,3}\.[0-9]{1,3}$'),
  smtp_text       text,
  worker_id       text NOT NULL,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz NOT NULL,
  duration_ms     integer NOT NULL CHECK (duration_ms >= 0),
  UNIQUE (delivery_id, attempt_number),
  CHECK (finished_at >= started_at)
);
CREATE INDEX attempts_finished_at_idx ON mail.attempts (finished_at);

-- At most one dead-letter row per delivery; a requeue marks it, a second exhaustion updates it.
CREATE TABLE mail.dead_letters (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id     uuid NOT NULL UNIQUE REFERENCES mail.deliveries (id) ON DELETE CASCADE,
  reason          text NOT NULL,
  last_attempt_id bigint REFERENCES mail.attempts (id) ON DELETE SET NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  requeued_at     timestamptz,
  requeued_by     text
);
CREATE INDEX dead_letters_created_at_idx ON mail.dead_letters (created_at);

-- ---------------------------------------------------------------------------------------------
-- Intake: idempotency and quarantine (silent-encoding-change: nothing is dropped silently).
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.idempotency_reservations (
  source          text NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
  idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
  -- Hash of the command's content: the same key with other content is a conflict, not a duplicate.
  request_hash    text NOT NULL,
  delivery_id     uuid NOT NULL REFERENCES mail.deliveries (id) ON DELETE CASCADE,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, idempotency_key)
);
CREATE INDEX idempotency_reservations_delivery_idx ON mail.idempotency_reservations (delivery_id);

CREATE TABLE mail.malformed_commands (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at      timestamptz NOT NULL DEFAULT now(),
  -- Where it came from: 'stream' (with its entry id), 'api'.
  channel          text NOT NULL CHECK (channel IN ('stream', 'api', 'smtp')),
  stream_entry_id  text CHECK (stream_entry_id ~ '^[0-9]+-[0-9]+$'),
  failure_code     text NOT NULL CHECK (failure_code IN (
                     'invalid_json', 'unknown_version', 'missing_field', 'invalid_field',
                     'unknown_template', 'missing_variable', 'invalid_address',
                     'idempotency_conflict', 'too_large')),
  failure_detail   text NOT NULL,
  schema_version   text,
  -- As far as they were readable; not foreign keys, because the command was not trusted.
  source           text,
  delivery_id      text,
  raw              text NOT NULL,
  CHECK (channel <> 'stream' OR stream_entry_id IS NOT NULL)
);
CREATE INDEX malformed_commands_received_at_idx ON mail.malformed_commands (received_at);

-- ---------------------------------------------------------------------------------------------
-- Suppression list: checked before every send.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.suppressions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  address     text NOT NULL UNIQUE CHECK (address = lower(address) AND address ~ '^[^@\s]+@[^@\s]+$'),
  reason      text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
  note        text,
  created_by  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz,
  CHECK (expires_at IS NULL OR expires_at > created_at)
);

-- ---------------------------------------------------------------------------------------------
-- Keep-alive: every supervised loop of every process heartbeats here (dead-runner and stalled-worker, docs/incidents.md).
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.workers (
  -- One process: "<app>:<hostname>:<pid>:<random>"; one row per loop of it.
  worker_id     text NOT NULL,
  loop          text NOT NULL,
  app           text NOT NULL CHECK (app IN ('mta', 'core', 'api')),
  hostname      text NOT NULL,
  pid           integer NOT NULL,
  state         text NOT NULL CHECK (state IN ('starting', 'running', 'backoff', 'stopped')),
  restarts      integer NOT NULL DEFAULT 0 CHECK (restarts >= 0),
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  -- When the loop last finished a unit of work: a heartbeat without progress is a stall.
  progress_at   timestamptz,
  last_error    text,
  PRIMARY KEY (worker_id, loop)
);
CREATE INDEX workers_heartbeat_at_idx ON mail.workers (heartbeat_at);

-- ---------------------------------------------------------------------------------------------
-- API tokens: only a hash is stored; the token itself is shown once, at creation.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE mail.api_tokens (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  -- SHA-256 of the token, hex.
  token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  scopes        text[] NOT NULL CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
                  'admin', 'send', 'deliveries:read', 'deliveries:write', 'aliases:read',
                  'aliases:write', 'domains:read', 'domains:write', 'suppressions:read',
                  'suppressions:write', 'queue:read']::text[]),
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

-- Down Migration
-- The schema itself stays: it also holds the migrations table (mail.postern_migrations).

DROP TABLE mail.api_tokens, mail.workers, mail.suppressions, mail.malformed_commands,
  mail.idempotency_reservations, mail.dead_letters, mail.attempts, mail.deliveries,
  mail.message_payloads, mail.messages, mail.alias_targets, mail.aliases, mail.domains;
DROP FUNCTION mail.notify_alias_changed(), mail.notify_delivery_due();
