-- Up Migration
-- A counter of changes to mail.dkim_keys, bumped by every statement that writes the table. The
-- engine's claim reads it with the deliveries it claims (one row, an init plan of the claim), and an
-- engine keeps the DKIM keys it has read only while the counter stays the same: a key created,
-- rotated or retired through the API signs, or stops signing, from the first delivery claimed after
-- its commit, without a key query per signed message (apps/core/src/delivery/signing-key-cache.ts).
CREATE TABLE mail.dkim_keys_generation (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generation  bigint NOT NULL
);
INSERT INTO mail.dkim_keys_generation (generation) VALUES (1);

CREATE FUNCTION mail.bump_dkim_keys_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE mail.dkim_keys_generation SET generation = generation + 1;
  RETURN NULL;
END;
$$;
CREATE TRIGGER dkim_keys_generation_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mail.dkim_keys
  FOR EACH STATEMENT EXECUTE FUNCTION mail.bump_dkim_keys_generation();

-- Down Migration
DROP TRIGGER dkim_keys_generation_bump ON mail.dkim_keys;
DROP FUNCTION mail.bump_dkim_keys_generation();
DROP TABLE mail.dkim_keys_generation;
