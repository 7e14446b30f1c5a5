-- Up Migration
-- The deliveries trigger announced every row that became queued or retrying, also a retry
-- rescheduled minutes ahead. That announcement woke every engine's scheduler for a claim that
-- found nothing due (the row is claimed by the first poll after its due time, as before), and it
-- made the outcome statement a NOTIFYing transaction: PostgreSQL commits all such transactions of
-- the server one at a time, WAL flush included (async.c, PreCommit_Notify), so a retry storm's
-- outcome commits took turns with the edge's and the intake's accepts instead of sharing flushes.
-- Now only a row due by the time its transaction started is announced: new deliveries, lease
-- reclaims, released claims, requeued dead letters and a retry with no wait. Postern's statements
-- set next_attempt_at from the same transaction's now(), so for them the comparison is exact; a
-- row written by hand with a time of its own still ahead of the server's is claimed by the poll.
DROP TRIGGER deliveries_notify_due ON mail.deliveries;
CREATE TRIGGER deliveries_notify_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON mail.deliveries
  FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying') AND NEW.next_attempt_at <= now())
  EXECUTE FUNCTION mail.notify_delivery_due();

-- Down Migration
DROP TRIGGER deliveries_notify_due ON mail.deliveries;
CREATE TRIGGER deliveries_notify_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON mail.deliveries
  FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying'))
  EXECUTE FUNCTION mail.notify_delivery_due();
