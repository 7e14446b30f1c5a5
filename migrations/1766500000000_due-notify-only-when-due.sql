-- Up Migration
-- The deliveries trigger announced every row that became queued or retrying, also a retry
-- rescheduled minutes ahead. That announcement woke every engine's scheduler for a claim that
-- found nothing due (the row is claimed at its due time by the scheduler's poll, as before), and
-- it made the outcome statement a NOTIFYing transaction: PostgreSQL serializes the commits of all
-- such transactions in the cluster, WAL flush included (async.c, PreCommit_Notify), so a retry
-- storm's outcome commits queued behind, and held up, the edge's and the intake's accepts.
-- Now only a row due by the time its transaction started is announced: new deliveries, lease
-- reclaims, released claims, requeued dead letters and a retry with no wait (next_attempt_at is
-- always set from the same transaction's now(), so the comparison is exact).
DROP TRIGGER deliveries_notify_due ON mail.deliveries;
CREATE TRIGGER deliveries_notify_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON mail.deliveries
  FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying') AND NEW.next_attempt_at <= now())
  EXECUTE FUNCTION mail.notify_delivery_due();

-- Down Migration
DROP TRIGGER deliveries_notify_due ON mail.deliveries;
CREATE TRIGGER deliveries_notify_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON mail.deliveries
  FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying'))
  EXECUTE FUNCTION mail.notify_delivery_due();
