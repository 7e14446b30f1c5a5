-- Up Migration
-- An address's local part is stored in Unicode NFC (packages/shared/src/addresses/normalize-address.ts,
-- RFC 6532 3.1): `jörg` written with a combining diaeresis (NFD) is the same mailbox as the
-- precomposed one. Before, the two were stored as two addresses: a suppression of one did not stop
-- mail to the other, and an alias created in one spelling did not answer RCPT in the other. Rows
-- written before are put in NFC here, so that they meet the addresses normalised from now on:
--   suppressions and alias targets: a spelling whose NFC twin exists (or, among several decomposed
--   spellings, all but the oldest) is the same entry twice and is deleted; the rest are rewritten;
--   aliases: rewritten unless their domain already has the NFC spelling (then both are left as
--   they are: deleting one would lose its targets; an operator merges them by hand).
-- Only rows with a non-ASCII local part can change. The previous release compares spellings as
-- written: its edge answers 550 to the decomposed spelling of an alias rewritten here, and what it
-- writes during a rollback is not NFC; docs/deploy.md ("Rolling back") says what to do. Nothing is
-- done where the server encoding is not UTF8 (normalize() needs it).
DO $$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RETURN;
  END IF;

  DELETE FROM mail.suppressions s
   USING mail.suppressions t
   WHERE s.address !~ '^[\x01-\x7f]*$' AND NOT s.address IS NFC NORMALIZED
     AND t.id <> s.id AND normalize(t.address, NFC) = normalize(s.address, NFC)
     AND (t.address IS NFC NORMALIZED OR t.id < s.id);
  UPDATE mail.suppressions SET address = normalize(address, NFC)
   WHERE address !~ '^[\x01-\x7f]*$' AND NOT address IS NFC NORMALIZED;

  DELETE FROM mail.alias_targets s
   USING mail.alias_targets t
   WHERE s.address !~ '^[\x01-\x7f]*$' AND NOT s.address IS NFC NORMALIZED
     AND t.alias_id = s.alias_id AND t.id <> s.id AND normalize(t.address, NFC) = normalize(s.address, NFC)
     AND (t.address IS NFC NORMALIZED OR t.id < s.id);
  UPDATE mail.alias_targets SET address = normalize(address, NFC)
   WHERE address !~ '^[\x01-\x7f]*$' AND NOT address IS NFC NORMALIZED;

  UPDATE mail.aliases a SET local_part = normalize(a.local_part, NFC), updated_at = now()
   WHERE a.local_part !~ '^[\x01-\x7f]*$' AND NOT a.local_part IS NFC NORMALIZED
     AND NOT EXISTS (SELECT 1 FROM mail.aliases t
                      WHERE t.domain_id = a.domain_id AND t.id <> a.id
                        AND normalize(t.local_part, NFC) = normalize(a.local_part, NFC));
END
$$;

-- Down Migration
-- Nothing to undo here: a rollback keeps the NFC spellings (docs/deploy.md, "Rolling back").
