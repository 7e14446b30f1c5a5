// Lookups that may run at once on a pool shared with other work, per client and in all, with a
// bounded wait for a slot. Without a cap, whoever can trigger lookups cheaply holds every
// connection of the pool:
// - the edge keys by client network (MAIL_MTA_CLIENT_LOOKUP_CONCURRENCY per network, no cap in
//   all): a few hundred sessions from one sender (a directory harvest) held every connection and
//   legitimate senders' RCPTs timed out into 451. A RCPT that gets no slot within its deadline is
//   answered 451 4.3.2;
// - the API caps every bearer-token lookup together (apps/api/src/auth/token-lookups.ts), keyed by
//   the client's network: a flood of made-up tokens queued its lookups on the whole pool, and the
//   resolvers' queries behind them. A request that gets no slot in time is answered 503 with
//   Retry-After.
// Either way the refused lookup never touched the pool. A caller whose client went away while it
// waited (the signal) gives its place up and runs no lookup: a flood that connects, sends a token
// and hangs up costs no query for the requests it abandoned.
//
// Fairness: a freed slot goes to the clients with callers waiting in turn, one caller each, not to
// whoever queued first. Under a shared cap, first come first served let one client's flood queue
// hundreds of callers ahead of everyone else's, and another client's lookup waited out its
// deadline behind them; in turn, it waits for about one lookup per client waiting. Within one
// client, callers are served in the order they came.

interface Waiter {
  grant: () => void;
}

interface Client {
  running: number;
  waiting: Waiter[];
}

export class LookupSlots {
  private readonly clients = new Map<string, Client>();

  /** Clients with callers waiting, in the order their turn comes (Map: insertion order). */
  private readonly turns = new Map<string, Client>();

  private running = 0;

  private readonly perClient: number;

  private readonly total: number;

  /** At most `perClient` lookups per key at once and `total` in all (default: no cap in all). */
  constructor(perClient: number, total = Number.POSITIVE_INFINITY) {
    this.perClient = perClient;
    this.total = total;
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
      held.running -= 1;
      this.running -= 1;
      this.forgetIfIdle(key, held);
      this.grantInTurn();
    };
    if (held.waiting.length === 0 && held.running < this.perClient && this.running < this.total) {
      held.running += 1;
      this.running += 1;
      return Promise.resolve(once(release));
    }
    return new Promise((resolve) => {
      const giveUp = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', giveUp);
        const at = held.waiting.indexOf(waiter);
        if (at >= 0) held.waiting.splice(at, 1);
        if (held.waiting.length === 0) this.turns.delete(key);
        this.forgetIfIdle(key, held);
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
      if (!this.turns.has(key)) this.turns.set(key, held);
    });
  }

  /** Hands free slots to waiting callers: the first client in turn that may run one more, its
   *  first caller; that client then goes to the back of the turns if it still has callers waiting. */
  private grantInTurn(): void {
    while (this.running < this.total) {
      let granted = false;
      for (const [key, client] of this.turns) {
        if (client.running >= this.perClient) continue;
        const waiter = client.waiting.shift();
        if (!waiter) continue;
        client.running += 1;
        this.running += 1;
        this.turns.delete(key);
        if (client.waiting.length > 0) this.turns.set(key, client);
        waiter.grant();
        granted = true;
        break;
      }
      if (!granted) return;
    }
  }

  private forgetIfIdle(key: string, client: Client): void {
    if (client.running === 0 && client.waiting.length === 0 && this.clients.get(key) === client) this.clients.delete(key);
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
