-- Up Migration
-- The alias tables announced every change on mail_alias_changed for an edge-side positive cache
-- that Postern does not have and does not want: every RCPT is one indexed statement on the live
-- tables (stale-alias-table, docs/incidents.md), and a NOTIFY reaches a listener only after the
-- commit, so a cache fed by it could still answer a RCPT from before the change. The triggers
-- cost a notification per changed row in every alias write and tempted a reader to think a cache
-- exists; they go, with their function.
DROP TRIGGER domains_notify ON mail.domains;
DROP TRIGGER aliases_notify ON mail.aliases;
DROP TRIGGER alias_targets_notify ON mail.alias_targets;
DROP FUNCTION mail.notify_alias_changed();

-- Down Migration
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
