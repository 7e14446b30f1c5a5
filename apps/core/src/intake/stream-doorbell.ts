// Waiting for new stream entries without reading them. A blocking XREADGROUP returns what it waited
// for, whole, however large (stream-read.ts), and scripts may not block; so the engine waits for a
// ring instead and then reads through the script. The ring is Redis's client-side-caching
// invalidation in broadcasting mode: with `CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <stream>`
// on the command connection, Redis publishes the key's name on `__redis__:invalidate` to the
// notifications connection (<id>, RESP2 and subscribed: ioredis drops RESP3 invalidation pushes)
// whenever the stream is modified (XADD, XDEL, XTRIM...). No Redis configuration is needed
// (keyspace notifications would be), and nothing of an entry is sent.
//  - Tracking belongs to a connection: a reconnection of either (Redis restarted, a failover) ends
//    it. Before each wait CLIENT TRACKINGINFO says whether it is still on, to this listener, not
//    broken; if not it is turned on again and the caller reads once more before waiting (what was
//    added meanwhile rang no bell).
//  - A PING on the notifications connection at each wait lets a silent dead socket be found
//    (create-redis.ts DEAD_SOCKET_MS): a subscribed connection otherwise waits for nothing.
//  - Where tracking cannot be had (CLIENT refused by an ACL, the listener not connected), the wait
//    is a poll every POLL_MS: later, never lost. The wait never exceeds its timeout either way, so a
//    lost ring costs at most one timeout.
import { childLogger, type Logger, type Redis } from '@postern/shared';
import { recordOf } from './redis-record.ts';

const CHANNEL = '__redis__:invalidate';
export const POLL_MS = 100;

export interface StreamDoorbell {
  /** Call before each read: rings from now on are for what that read may not see. */
  beforeRead(): void;
  /** After a read found nothing: resolves on a ring, after `timeoutMs`, on abort; at once when
   *  tracking had to be (re)armed, so that the caller reads again first. */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
}

export function createStreamDoorbell(options: { commands: Redis; notifications: Redis; stream: string; logger: Logger }): StreamDoorbell {
  const { commands, notifications, stream } = options;
  const log = childLogger(options.logger, { component: 'stream-doorbell' });
  /** The notifications connection's client id while it is subscribed. */
  let listenerId: number | null = null;
  let rung = false;
  let wake: (() => void) | null = null;
  /** Whether the last wait polled for want of tracking: logged once per change. */
  let polling = false;

  function ring(): void {
    rung = true;
    wake?.();
  }

  async function listen(): Promise<void> {
    listenerId = null;
    try {
      const id = Number(await notifications.client('ID'));
      await notifications.subscribe(CHANNEL);
      listenerId = id;
    } catch (error) {
      log.warn({ err: error }, 'subscribing to stream notifications failed; polling until the connection is made again');
    }
  }

  notifications.on('message', (channel: string) => {
    if (channel === CHANNEL) ring();
  });
  notifications.on('ready', () => void listen());
  // Its id is another client's, or nobody's, on a Redis restarted or failed over to.
  notifications.on('close', () => {
    listenerId = null;
  });
  if (notifications.status === 'ready') void listen();

  /** True when tracking was on already; false when it had to be turned on, or could not be. */
  async function tracking(): Promise<boolean> {
    const listener = listenerId;
    if (listener === null) return false;
    const info = recordOf(await commands.call('CLIENT', 'TRACKINGINFO'));
    const flags = (info.flags as unknown[] | undefined)?.map(String) ?? [];
    if (flags.includes('on') && !flags.includes('broken_redirect') && Number(info.redirect) === listener) return true;
    if (flags.includes('on')) await commands.call('CLIENT', 'TRACKING', 'OFF');
    await commands.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', listener, 'BCAST', 'PREFIX', stream, 'NOLOOP');
    log.info({ listener }, 'waiting for new stream entries by Redis client tracking');
    polling = false;
    return false;
  }

  async function wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    let armed = false;
    try {
      armed = await tracking();
      if (!armed && listenerId !== null) return;
    } catch (error) {
      if (!polling) log.warn({ err: error }, `Redis client tracking refused; polling the stream every ${POLL_MS} ms`);
      polling = true;
    }
    if (rung || signal.aborted) return;
    notifications.ping().catch(() => {});
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        wake = null;
        resolve();
      };
      const timer = setTimeout(done, armed ? timeoutMs : Math.min(POLL_MS, timeoutMs));
      signal.addEventListener('abort', done, { once: true });
      wake = done;
    });
  }

  return {
    beforeRead() {
      rung = false;
    },
    wait,
  };
}
