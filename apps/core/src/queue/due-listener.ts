// The LISTEN mail_delivery_due session: the deliveries trigger notifies for every row that is due
// when it is inserted or rescheduled (a retry due later is left to the poll), and each
// notification wakes the scheduler at once instead of at its next poll. The
// session is a pooled connection of its own that is never handed back (another user would inherit
// the LISTEN). Opening it and losing it are reported as engine events; a broken session wakes the
// scheduler, which ends its run on it (its supervisor restarts it with a fresh session, and the
// polling interval keeps claiming whatever was notified meanwhile).
import type { Pool, PoolClient } from '@postern/shared';
import type { EngineEvents } from '../engine-events.ts';

const CHANNEL = 'mail_delivery_due';

/** What wakes the scheduler between polls, held for one run of its loop. */
export interface WakeSource {
  /** Set once the session broke: the run that holds it should end. */
  readonly broken: Error | null;
  close(): void;
}

export async function listenForDueDeliveries(options: { pool: Pool; wake: () => void; events: EngineEvents }): Promise<WakeSource> {
  const { events, wake } = options;
  let client: PoolClient;
  try {
    client = await options.pool.connect();
  } catch (error) {
    events.emit('listen:error', { channel: CHANNEL, error: error as Error });
    throw error;
  }
  let broken: Error | null = null;
  let closed = false;
  const onNotification = () => wake();
  const onBroken = (error?: Error) => {
    if (closed || broken) return;
    broken = error ?? new Error('LISTEN connection ended');
    events.emit('listen:error', { channel: CHANNEL, error: broken });
    wake();
  };
  client.on('notification', onNotification);
  // Left attached after close: a destroyed client may still emit 'error', which must not go unheard.
  client.on('error', onBroken);
  client.on('end', onBroken);
  const close = () => {
    if (closed) return;
    closed = true;
    client.off('notification', onNotification);
    client.release(true);
  };
  try {
    await client.query('LISTEN mail_delivery_due');
  } catch (error) {
    if (!broken) events.emit('listen:error', { channel: CHANNEL, error: error as Error });
    close();
    throw error;
  }
  events.emit('listen:connected', { channel: CHANNEL });
  return {
    get broken() {
      return broken;
    },
    close,
  };
}
