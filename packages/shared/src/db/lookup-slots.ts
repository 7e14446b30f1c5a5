// Lookups that may run at once on a pool shared with other work, per key, with a bounded wait for a
// slot. Without a cap, whoever can trigger lookups cheaply holds every connection of the pool:
// - the edge keys by client network (MAIL_MTA_CLIENT_LOOKUP_CONCURRENCY): a few hundred sessions
//   from one sender (a directory harvest) held every connection and legitimate senders' RCPTs
//   timed out into 451. A RCPT that gets no slot within its deadline is answered 451 4.3.2;
// - the API has one key for every bearer-token lookup (apps/api/src/auth/token-lookups.ts): a
//   flood of made-up tokens queued its lookups on the whole pool, and the resolvers' queries behind
//   them. A request that gets no slot in time is answered 503 with Retry-After.
// Either way the refused lookup never touched the pool. A caller whose client went away while it
// waited (the signal) gives its place up and runs no lookup: a flood that connects, sends a token
// and hangs up costs no query for the requests it abandoned.

interface Waiter {
  grant: () => void;
}

interface Client {
  running: number;
  waiting: Waiter[];
}

export class LookupSlots {
  private readonly clients = new Map<string, Client>();

  private readonly perClient: number;

  constructor(perClient: number) {
    this.perClient = perClient;
  }

  /** Clients with a lookup running or waiting (bounded by the connections open). */
  get trackedClients(): number {
    return this.clients.size;
  }

  /** A release function once a slot is held, or null when none came free within `timeoutMs` or
   *  `signal` was aborted first (the caller's client is gone: `signal.aborted` tells the two apart). */
  acquire(key: string, timeoutMs: number, signal?: AbortSignal): Promise<(() => void) | null> {
    if (signal?.aborted) return Promise.resolve(null);
    let client = this.clients.get(key);
    if (!client) {
      client = { running: 0, waiting: [] };
      this.clients.set(key, client);
    }
    const held = client;
    const release = () => {
      const next = held.waiting.shift();
      if (next) next.grant();
      else if (--held.running === 0) this.clients.delete(key);
    };
    if (held.running < this.perClient) {
      held.running += 1;
      return Promise.resolve(once(release));
    }
    return new Promise((resolve) => {
      const giveUp = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', giveUp);
        const at = held.waiting.indexOf(waiter);
        if (at >= 0) held.waiting.splice(at, 1);
        resolve(null);
      };
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', giveUp);
          resolve(once(release));
        },
      };
      const timer = setTimeout(giveUp, timeoutMs);
      signal?.addEventListener('abort', giveUp, { once: true });
      held.waiting.push(waiter);
    });
  }
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}
