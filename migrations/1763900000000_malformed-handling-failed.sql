-- Up Migration
-- silent-encoding-change: no poison entry may block the stream. A command that decodes but whose acceptance keeps
-- failing with an error that is neither bad data (SQLSTATE 22/23, quarantined as invalid_field)
-- nor the database being away (waited out) is quarantined after a few handlings as handling_failed,
-- with the error as its detail, instead of being re-read at the head of the stream forever.
ALTER TABLE mail.malformed_commands DROP CONSTRAINT malformed_commands_failure_code_check;
ALTER TABLE mail.malformed_commands ADD CONSTRAINT malformed_commands_failure_code_check CHECK (failure_code IN (
  'invalid_json', 'unknown_version', 'missing_field', 'invalid_field',
  'unknown_template', 'missing_variable', 'invalid_address',
  'idempotency_conflict', 'too_large', 'handling_failed'));

-- Down Migration
-- NOT VALID: rows already quarantined as handling_failed are kept (they are the evidence), only new
-- rows are held to the old list.
ALTER TABLE mail.malformed_commands DROP CONSTRAINT malformed_commands_failure_code_check;
ALTER TABLE mail.malformed_commands ADD CONSTRAINT malformed_commands_failure_code_check CHECK (failure_code IN (
  'invalid_json', 'unknown_version', 'missing_field', 'invalid_field',
  'unknown_template', 'missing_variable', 'invalid_address',
  'idempotency_conflict', 'too_large')) NOT VALID;
