-- Up Migration
-- BODY= given at MAIL FROM (RFC 6152: 7BIT or 8BITMIME), lower case; NULL when the sender gave none.
-- The relay repeats it only when the sender used it. SMTPUTF8 is already
-- recorded in mail.messages.smtputf8.
ALTER TABLE mail.messages
  ADD COLUMN body_type text CHECK (body_type IN ('7bit', '8bitmime'));

-- Down Migration
ALTER TABLE mail.messages DROP COLUMN body_type;
