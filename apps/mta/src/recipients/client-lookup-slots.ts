// Recipient lookups one client network may have running at once. The lookup pool is shared by
// every session; without a cap a few hundred sessions from one sender (a directory harvest) hold
// every connection and legitimate senders' RCPTs time out into 451. Over the cap a lookup waits for
// a slot of its own client, within the same RCPT deadline; one that gets none is answered
// 451 4.3.2 (the sender retries later) without having touched the pool.

interface Waiter {
  grant: () => void;
}

interface Client {
  running: number;
  waiting: Waiter[];
}

export class ClientLookupSlots {
  private readonly clients = new Map<string, Client>();

  private readonly perClient: number;

  constructor(perClient: number) {
    this.perClient = perClient;
  }

  /** Clients with a lookup running or waiting (bounded by the connections open). */
  get trackedClients(): number {
    return this.clients.size;
  }

  /** A release function once a slot is held, or null when none came free within `timeoutMs`. */
  acquire(key: string, timeoutMs: number): Promise<(() => void) | null> {
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
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve(once(release));
        },
      };
      const timer = setTimeout(() => {
        held.waiting.splice(held.waiting.indexOf(waiter), 1);
        resolve(null);
      }, timeoutMs);
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
