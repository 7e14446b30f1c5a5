// The wait before the greeting (MAIL_MTA_GREETING_DELAY), an early-talker check: a client that
// sends before the 220 is answered 421 and closed by smtp-server (its greetingDelay option, from our
// patch). The wait costs every connection its length, so it is paid once per client: a client
// network (IPv4 address, IPv6 /64) that waited it out is greeted at once for PASS_TTL_MS, as
// Postfix's postscreen remembers a passed pregreet test (postscreen_greet_ttl). With no delay
// configured nothing is checked or remembered. Memory is bounded: at most `maxClients` passes, the
// oldest forgotten first (forgetting only costs that client one more wait).
import { clientNetworkKey } from '@postern/shared';

/** How long a passed check is remembered: postscreen_greet_ttl's default. */
const PASS_TTL_MS = 24 * 3_600_000;

export interface GreetingDelayOptions {
  delayMs: number;
  maxClients?: number;
  now?: () => number;
}

export class GreetingDelay {
  private readonly delayMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;
  /** Client network → when it passed; Map order is pass order, so the oldest pass comes first. */
  private readonly passed = new Map<string, number>();

  constructor(options: GreetingDelayOptions) {
    this.delayMs = options.delayMs;
    this.maxClients = options.maxClients ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  get rememberedClients(): number {
    return this.passed.size;
  }

  /** The wait before this client's greeting: none for a client that passed within the TTL. */
  delayFor(remoteAddress: string): number {
    if (this.delayMs <= 0) return 0;
    const key = clientNetworkKey(remoteAddress);
    const passedAt = this.passed.get(key);
    if (passedAt === undefined) return this.delayMs;
    if (this.now() - passedAt < PASS_TTL_MS) return 0;
    this.passed.delete(key);
    return this.delayMs;
  }

  /** The client reached its greeting without talking first (smtp-server calls onConnect only then).
   *  A pass already remembered keeps its time, so the check is made again once a day. */
  pass(remoteAddress: string): void {
    if (this.delayMs <= 0) return;
    const key = clientNetworkKey(remoteAddress);
    if (this.passed.has(key)) return;
    this.passed.set(key, this.now());
    while (this.passed.size > this.maxClients) {
      const oldest = this.passed.keys().next().value as string;
      this.passed.delete(oldest);
    }
  }
}
