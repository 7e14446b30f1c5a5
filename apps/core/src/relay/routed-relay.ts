// Per-domain routes (MAIL_SMTP_MODE smtp and mx; stub mode sends nothing and reads no route): each
// send asks the route table (route-table.ts) where its recipient domain's mail goes — a relay
// host, the domain's own MX hosts ("mx"), or, with no route, MAIL_SMTP_MODE's default — and hands
// the message to that relay. The choice goes back with the result and is recorded on the attempt.
// A relay host gets its own pooled SMTP relay (smtp-relay.ts) per host, port and TLS requirement,
// closed once unused for RELAY_IDLE_MS; direct delivery is one mx relay (mx-relay.ts), the default
// one itself in mx mode. A route with credentials authenticates to its relay (SMTP AUTH, only on
// routes whose TLS is required): its password, sealed in the table, is opened when the relay's pool
// is made; a pool is per host, port, TLS requirement and credentials, so changed credentials take a
// new one. A password that cannot be opened (MAIL_SECRETS_KEY missing or another) defers the send.
// Nothing about a route is permanent: a route table that cannot be read, or a relay that refuses
// the connection or fails TLS, defers the delivery on the retry ladder like any transport failure.
import { createHash } from 'node:crypto';
import { childLogger, describeRouteRelay, type Logger, normalizeDomain, type RouteAuth, type RouteRule, type RouteTlsPolicy, type SealedRouteAuth } from '@postern/shared';
import type { OutboundMessage, Relay, RouteChoice, SendResult } from './relay.ts';
import type { RouteTable } from './route-table.ts';

/** A routed relay host's pool is closed after this long without a send (its route may be gone). */
const RELAY_IDLE_MS = 5 * 60_000;
/** Credentials that cannot be opened are logged as an error at most this often per route. */
const UNOPENABLE_LOG_MS = 60_000;

export interface RoutedRelayOptions {
  /** Where mail without a route goes: the relay MAIL_SMTP_MODE names. */
  fallback: Relay;
  /** How the default is recorded: "mx" or the relay's host:port, and its TLS requirement. */
  fallbackChoice: Omit<RouteChoice, 'domain'>;
  routes: RouteTable;
  /** The direct-to-MX relay, made when first needed (in mx mode: the fallback). */
  direct: () => Relay;
  /** A new pooled relay to one host, authenticating with `auth` if given. */
  relayTo: (host: string, port: number, tls: RouteTlsPolicy, auth: RouteAuth | null) => Relay;
  /** The password of a route's credentials in the clear (openRoutePassword with MAIL_SECRETS_KEY). */
  openPassword: (routeDomain: string, auth: SealedRouteAuth) => string;
  logger: Logger;
  now?: () => number;
}

/** The recipient's domain as routes name it; a domain that does not normalise matches no route. */
function routingDomain(recipient: string): string | null {
  try {
    return normalizeDomain(recipient.slice(recipient.lastIndexOf('@') + 1));
  } catch {
    return null;
  }
}

/** A relay host — routed, or MAIL_SMTP_ADDR's — that refuses the session (a 5xx greeting, HELO or
 *  AUTH refused) said nothing about the recipient: deferred like a refused connection, never a
 *  bounce (Postfix's smtp_skip_5xx_greeting). The reply is kept in the text. */
function setupRefusalDeferred(result: SendResult): SendResult {
  if (result.ok || !result.failure.inSetup || !result.failure.reply) return result;
  const { failure } = result;
  return { ok: false, failure: { ...failure, kind: 'connection', reply: null, message: `the relay refused the session: ${failure.message}`.slice(0, 1_000) } };
}

function withChoice(result: SendResult, choice: RouteChoice): SendResult {
  return result.ok ? { ...result, choice } : { ok: false, failure: { ...result.failure, choice } };
}

export function createRoutedRelay(options: RoutedRelayOptions): Relay {
  const log = childLogger(options.logger, { component: 'routed-relay' });
  const now = options.now ?? (() => performance.now());
  let direct: Relay | null = null;
  const hosts = new Map<string, { relay: Relay; usedAt: number; sending: number }>();
  /** When each route's unopenable credentials were last logged as an error. */
  const unopenableLoggedAt = new Map<string, number>();

  const directRelay = () => {
    direct ??= options.direct();
    return direct;
  };

  /** Closes the pools of relay hosts no send has used for RELAY_IDLE_MS. */
  const closeIdle = (at: number) => {
    for (const [key, entry] of hosts) {
      if (entry.sending === 0 && at - entry.usedAt > RELAY_IDLE_MS) {
        hosts.delete(key);
        entry.relay.close().catch((error: unknown) => log.warn({ err: error, relay: key }, 'closing an idle routed relay failed'));
      }
    }
  };

  /** The credentials of a route, opened; or why they cannot be (the send is then deferred). */
  const credentials = (rule: RouteRule): { ok: true; auth: RouteAuth | null } | { ok: false; result: SendResult } => {
    if (!rule.auth) return { ok: true, auth: null };
    try {
      return { ok: true, auth: { username: rule.auth.username, password: options.openPassword(rule.domain, rule.auth) } };
    } catch (error) {
      // Every send to the route fails alike until the key is fixed: one error line a minute, the
      // rest at debug (each attempt records the reason anyway).
      const at = now();
      const loggedAt = unopenableLoggedAt.get(rule.domain);
      const level = loggedAt === undefined || at - loggedAt >= UNOPENABLE_LOG_MS ? 'error' : 'debug';
      if (level === 'error') unopenableLoggedAt.set(rule.domain, at);
      log[level]({ err: error, route: rule.domain }, "a route's credentials cannot be opened; its deliveries are deferred");
      const text = (error as Error).message.slice(0, 1_000);
      return { ok: false, result: { ok: false, failure: { kind: 'other', reply: null, dataSent: false, interrupted: false, message: text } } };
    }
  };

  const sendVia = async (rule: RouteRule, message: OutboundMessage, progress: () => void): Promise<SendResult> => {
    if (rule.relay.kind === 'mx') return directRelay().send(message, progress);
    // The pool's key names the credentials by a digest of their sealed form, never the password.
    const sealedDigest = rule.auth ? createHash('sha256').update(rule.auth.passwordSealed).digest('base64url').slice(0, 16) : '';
    const key = `${describeRouteRelay(rule.relay)} ${rule.tls}${rule.auth ? ` ${rule.auth.username} ${sealedDigest}` : ''}`;
    const at = now();
    closeIdle(at);
    let entry = hosts.get(key);
    if (!entry) {
      const opened = credentials(rule);
      if (!opened.ok) return opened.result;
      entry = { relay: options.relayTo(rule.relay.host, rule.relay.port, rule.tls, opened.auth), usedAt: at, sending: 0 };
      hosts.set(key, entry);
    }
    entry.sending += 1;
    try {
      return setupRefusalDeferred(await entry.relay.send(message, progress));
    } finally {
      entry.sending -= 1;
      entry.usedAt = now();
    }
  };

  return {
    name: options.fallback.name,
    async send(message: OutboundMessage, progress: () => void = () => {}): Promise<SendResult> {
      const domain = routingDomain(message.recipient);
      let rule: RouteRule | null = null;
      if (domain !== null) {
        try {
          rule = await options.routes.lookup(domain);
        } catch (error) {
          log.warn({ err: error, recipientDomain: domain }, 'the route table could not be read; the delivery is deferred');
          const text = `route table unavailable: ${(error as Error).message}`.slice(0, 1_000);
          return { ok: false, failure: { kind: 'other', reply: null, dataSent: false, interrupted: false, message: text } };
        }
      }
      // MAIL_SMTP_ADDR's relay refusing the session is no more about the recipient than a routed
      // relay's: deferred alike (a 5xx greeting bounced every message queued while it lasted).
      if (!rule) return withChoice(setupRefusalDeferred(await options.fallback.send(message, progress)), { domain: null, ...options.fallbackChoice });
      const choice: RouteChoice = { domain: rule.domain, relay: describeRouteRelay(rule.relay), tls: rule.tls };
      return withChoice(await sendVia(rule, message, progress), choice);
    },
    interrupt() {
      options.fallback.interrupt();
      if (direct && direct !== options.fallback) direct.interrupt();
      for (const entry of hosts.values()) entry.relay.interrupt();
    },
    async close() {
      const relays = [options.fallback, ...(direct && direct !== options.fallback ? [direct] : []), ...[...hosts.values()].map((entry) => entry.relay)];
      hosts.clear();
      await Promise.all(relays.map((relay) => relay.close()));
    },
  };
}
