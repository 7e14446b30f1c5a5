// Shaping per destination site for direct delivery (docs/core.md, "Shaping"). Before mx-relay.ts
// connects anywhere, a send enters its site (site-key.ts: the recipient domain's MX host set):
//   1. the site's message rate (a shared token bucket, when one is set) must have a token left;
//   2. an idle connection this engine keeps to the site is reused, after an RSET proves it alive
//      (one the server closes even so, before it answers the transaction, is replaced on its slot:
//      SiteLease.replace);
//   3. otherwise a connection slot shared by every engine is claimed (site-store.ts) — refused
//      while the site is backed off, and only one (the probe) after the backoff until a session
//      is set up — and the send opens a new connection on it;
//   4. with no slot free but this engine's own connections to the site busy, the send waits a
//      moment for one of them to come back (handed over directly) before it gives up.
// A send that cannot go ahead is deferred: it fails with kind 'deferred' and a short wait, which
// the attempt worker records without spending a step of the retry ladder. So is a send when
// PostgreSQL, which holds the shared limits, cannot be reached: unsure is not a failed attempt.
// Slot leases are renewed every third of their length; when renewals fail for two thirds of it,
// every connection is closed once it is not in use, since its slot may be another engine's soon.
// After a send, its connection goes back to the site's idle pool only when the transaction was
// accepted and the connection is healthy: any error, and any outcome that is not known (a timeout,
// a closed socket), closes it, so a connection is never reused in an unknown state. It is also
// closed (QUIT) after the site's messages-per-connection, after MAIL_SHAPING_IDLE_TIMEOUT idle, or
// when its slot's lease could not be renewed; its slot is released as it closes.
// A site where every MX host refused the connection, or the greeting, EHLO or TLS setup, is backed
// off for every engine (site-store.ts) and its deliveries wait without connecting.
import { randomBytes } from 'node:crypto';
import { childLogger, isDnsNoRecord, type Logger, type MailResolver } from '@postern/shared';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Route, SendFailure } from './relay.ts';
import { siteKey } from './site-key.ts';
import type { DeferralReason, SiteMetrics } from './site-metrics.ts';
import { limitsFor, type SiteLimits, type SiteRule } from './site-rules.ts';
import type { SiteStore } from './site-store.ts';
import { resetSession, responseLineHook } from './smtp-transaction.ts';

/** A slot's lease: renewed every third of it while its connection lives; a crashed engine's slots
 *  are free again at most this long after its last renewal. */
export const SLOT_LEASE_MS = 60_000;
/** Longest wait for one of this engine's busy connections to a full site to come back. */
export const HANDOFF_WAIT_MS = 2_000;

export interface SiteShapingOptions {
  store: SiteStore;
  resolver: MailResolver;
  rules: readonly SiteRule[];
  defaults: SiteLimits;
  idleTimeoutMs: number;
  deferMs: number;
  backoffMs: number;
  /** Bounds an RSET on a reused connection. */
  timeoutMs: number;
  /** Names this engine's slot leases. */
  engineId: string;
  metrics: SiteMetrics;
  logger: Logger;
  /** Randomness of the deferral jitter (tests). */
  random?: () => number;
}

/** An open session the relay sends on. */
export interface SiteSession {
  connection: SMTPConnection;
  route: Route;
}

/** A send's place at its site: a reused session, or a slot to open a new one on. */
export interface SiteLease {
  readonly site: string;
  /** A pooled connection, already RSET: send on it without connecting. */
  readonly reused: SiteSession | null;
  /** A new session was set up on this lease's slot. */
  opened(session: SiteSession): void;
  /** The reused connection was lost before it answered a word of the transaction (the server
   *  closed it while it was idle): it is closed, and its slot kept for a new session, which the
   *  send opens and hands to opened(). False when the slot is not this engine's to keep any more
   *  (its lease could not be renewed, the engine is closing): the send ends as it failed. */
  replace(): boolean;
  /** No session could be set up with any MX host: the site is backed off. */
  unreachable(failure: SendFailure): Promise<void>;
  /** The send is over: `reusable` only when the transaction was accepted on a healthy connection.
   *  Idempotent: the first call decides. */
  finish(outcome: string, reusable: boolean): void;
}

export type SiteEntry = { kind: 'unshaped' } | { kind: 'refused'; failure: SendFailure } | { kind: 'lease'; lease: SiteLease };

export interface SiteShaping {
  enter(domain: string, progress: () => void): Promise<SiteEntry>;
  /** Idle connections and slots this engine holds (tests, the pool's own accounting). */
  held(site: string): { idle: number; busy: number };
  /** Sites this engine keeps state for: those with a connection, a send or a waiter (tests). */
  readonly trackedSites: number;
  close(): Promise<void>;
}

interface Pooled {
  site: string;
  slot: number;
  holder: string;
  session: SiteSession | null;
  messages: number;
  /** Its slot is given back (or is being); the connection must not be used again. */
  released: boolean;
  /** Its slot's lease could not be renewed: close it at the end of the send under way. */
  lost: boolean;
  idleTimer: NodeJS.Timeout | null;
}

interface SiteState {
  limits: SiteLimits;
  idle: Pooled[];
  busy: number;
  waiters: Array<(pooled: Pooled | null) => void>;
  /** Sends between entering the site and holding a lease (or being refused). */
  entering: number;
}

function deferral(message: string, retryInMs: number): SendFailure {
  return { kind: 'deferred', reply: null, dataSent: false, interrupted: false, message, retryInMs };
}

export function createSiteShaping(options: SiteShapingOptions): SiteShaping {
  const log = childLogger(options.logger, { component: 'site-shaping' });
  const random = options.random ?? Math.random;
  const sites = new Map<string, SiteState>();
  /** Every slot this engine holds, by holder: renewed together. */
  const holding = new Map<string, Pooled>();
  /** Slot releases under way, by site. A claim for the site waits for them: the release and the
   *  claim go over different database connections, and a claim that overtook the release of a
   *  dead connection's slot would find a full site and defer the message it was to replace. */
  const releasing = new Map<string, Set<Promise<void>>>();
  let closed = false;

  const jitter = (ms: number) => Math.round(ms * (0.75 + random() / 2));

  const stateOf = (site: string, limits: SiteLimits): SiteState => {
    let state = sites.get(site);
    if (!state) {
      state = { limits, idle: [], busy: 0, waiters: [], entering: 0 };
      sites.set(site, state);
    }
    state.limits = limits;
    return state;
  };

  /** A site with nothing of this engine's in it is forgotten: one state per destination site ever
   *  mailed would grow without end in a long-lived engine that mails many domains. Its next send
   *  starts a new state; the limits themselves live in PostgreSQL. */
  const forgetIfUnused = (site: string, state: SiteState) => {
    if (sites.get(site) !== state) return;
    if (state.busy === 0 && state.entering === 0 && state.idle.length === 0 && state.waiters.length === 0) sites.delete(site);
  };

  /** Closes a pooled connection (QUIT when it is healthy) and gives its slot back, once. */
  const retire = (pooled: Pooled, politely: boolean): Promise<void> => {
    if (pooled.released) return Promise.resolve();
    pooled.released = true;
    if (pooled.idleTimer) clearTimeout(pooled.idleTimer);
    const state = sites.get(pooled.site);
    if (state) {
      state.idle = state.idle.filter((other) => other !== pooled);
      forgetIfUnused(pooled.site, state);
    }
    holding.delete(pooled.holder);
    const connection = pooled.session?.connection;
    if (connection) {
      try {
        if (politely) connection.quit();
        else connection.close();
      } catch {
        connection.close();
      }
    }
    const release = options.store.releaseSlot(pooled.site, pooled.slot, pooled.holder).catch((error: unknown) => {
      // Its lease runs out by itself: the slot is free again within SLOT_LEASE_MS.
      log.warn({ err: error, site: pooled.site }, 'releasing a connection slot failed; it frees itself when its lease runs out');
    });
    const pending = releasing.get(pooled.site) ?? new Set<Promise<void>>();
    releasing.set(pooled.site, pending);
    pending.add(release);
    void release.finally(() => {
      pending.delete(release);
      if (pending.size === 0 && releasing.get(pooled.site) === pending) releasing.delete(pooled.site);
    });
    return release;
  };

  /** A connection that ended its send healthy: to a waiting send, to the idle pool, or closed. */
  const giveBack = (pooled: Pooled, state: SiteState) => {
    if (closed || pooled.lost || pooled.messages >= state.limits.messagesPerConnection) {
      void retire(pooled, true);
      return;
    }
    const waiter = state.waiters.shift();
    if (waiter) {
      waiter(pooled);
      return;
    }
    pooled.idleTimer = setTimeout(() => void retire(pooled, true), options.idleTimeoutMs);
    pooled.idleTimer.unref?.();
    state.idle.push(pooled);
  };

  const leaseOf = (pooled: Pooled, state: SiteState, reused: SiteSession | null): SiteLease => {
    state.busy += 1;
    let finished = false;
    return {
      site: pooled.site,
      reused,
      opened(session) {
        pooled.session = session;
        options.metrics.connection(pooled.site, 'opened');
        options.metrics.tls(pooled.site, session.route.tls);
        // A server that closes an idle connection: dropped from the pool (and its slot given back).
        // Only while it is this slot's connection: a replaced one's end says nothing of the next.
        session.connection.once('end', () => {
          if (state.idle.includes(pooled) && pooled.session === session) void retire(pooled, false);
        });
        options.store.clearBackoff(pooled.site).catch((error: unknown) => log.warn({ err: error, site: pooled.site }, 'clearing a site backoff failed'));
      },
      replace() {
        const lost = pooled.session;
        if (finished || closed || pooled.released || pooled.lost || !lost) return false;
        pooled.session = null;
        pooled.messages = 0;
        lost.connection.close();
        return true;
      },
      async unreachable(failure) {
        // A refused connection, an error greeting or EHLO, a failed TLS setup or a timeout on every
        // host; not a DNS failure (no host was reached) nor the engine's own interrupt.
        if (failure.interrupted || !['reply', 'connection', 'timeout'].includes(failure.kind)) return;
        try {
          const backoff = await options.store.backOff(pooled.site, options.backoffMs, failure.message);
          options.metrics.backoff(pooled.site);
          log.warn({ site: pooled.site, retryInMs: backoff.retryInMs, failures: backoff.failures, reason: failure.message }, 'site backed off: no MX host would take a session');
        } catch (error) {
          log.warn({ err: error, site: pooled.site }, 'recording a site backoff failed');
        }
      },
      finish(outcome, reusable) {
        if (finished) return;
        finished = true;
        state.busy -= 1;
        options.metrics.attempt(pooled.site, outcome);
        if (outcome === 'sent') pooled.messages += 1;
        if (reusable && pooled.session && !pooled.released) giveBack(pooled, state);
        else void retire(pooled, false);
        forgetIfUnused(pooled.site, state);
      },
    };
  };

  /** The site of a domain from its MX records; null: not shaped (the relay reports why). */
  const siteOf = async (domain: string): Promise<{ key: string; hosts: string[] } | null | SendFailure> => {
    try {
      const records = await options.resolver.resolve(domain, 'MX');
      const hosts = records.map((record) => record.exchange).filter((host) => host !== '' && host !== '.');
      // A null MX (or names with nothing left of them): not shaped; the relay refuses a null MX
      // for good without connecting.
      const key = siteKey(hosts);
      if (key === '') return null;
      return { key, hosts };
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'ERROR';
      // No MX: the domain itself is its only host (RFC 5321 5.1); no such domain: the relay says so.
      if (isDnsNoRecord(error)) return code === 'ENOTFOUND' ? null : { key: siteKey([domain]), hosts: [domain] };
      // Without the site no limit can be kept: the send waits, as for any DNS failure.
      return { kind: 'dns', reply: null, dataSent: false, interrupted: false, message: `${code}: looking up the MX records of ${domain} failed: ${(error as Error).message}`.slice(0, 1_000) };
    }
  };

  /** A pooled connection made ready for the next message, or null when it turned out dead. */
  const revive = async (pooled: Pooled, progress: () => void): Promise<SiteSession | null> => {
    const session = pooled.session;
    if (!session) return null;
    // Reply lines of this send beat this send's worker (nodemailer reads the option per line).
    responseLineHook(session.connection).onResponseLine = () => progress();
    if (await resetSession(session.connection, options.timeoutMs)) return { connection: session.connection, route: { ...session.route, skipped: [] } };
    return null;
  };

  const refuse = (site: string, reason: DeferralReason, message: string, retryInMs: number): SiteEntry => {
    options.metrics.deferral(site, reason);
    return { kind: 'refused', failure: deferral(message, retryInMs) };
  };

  /** Connections whose slot may be another engine's by now go as soon as they are not in use. */
  const lose = (pooled: Pooled) => {
    pooled.lost = true;
    if (sites.get(pooled.site)?.idle.includes(pooled)) void retire(pooled, true);
  };
  let renewedAt = Date.now();
  const renewTimer = setInterval(() => {
    const holders = [...holding.keys()];
    if (holders.length === 0) {
      renewedAt = Date.now();
      return;
    }
    options.store
      .renewSlots(holders, SLOT_LEASE_MS)
      .then((renewed) => {
        renewedAt = Date.now();
        for (const holder of holders) {
          const pooled = holding.get(holder);
          if (pooled && !renewed.has(holder)) lose(pooled);
        }
      })
      .catch((error: unknown) => {
        log.warn({ err: error }, 'renewing connection slot leases failed; retried at the next renewal');
        // Two renewals missed: the leases may run out before the next one lands.
        if (Date.now() - renewedAt >= (SLOT_LEASE_MS * 2) / 3) for (const pooled of holding.values()) lose(pooled);
      });
  }, SLOT_LEASE_MS / 3);
  renewTimer.unref?.();

  /** Enters a site; PostgreSQL failing (away, slow) defers the send rather than spend an attempt. */
  const enter = async (domain: string, progress: () => void): Promise<SiteEntry> => {
    try {
      return await enterSite(domain, progress);
    } catch (error) {
      log.warn({ err: error, recipientDomain: domain }, 'shaping could not reach its shared state; the delivery is deferred');
      return { kind: 'refused', failure: deferral(`deferred: the shared shaping state could not be read: ${(error as Error).message}`.slice(0, 1_000), jitter(options.deferMs)) };
    }
  };

  const enterSite = async (domain: string, progress: () => void): Promise<SiteEntry> => {
    if (closed) return { kind: 'unshaped' };
    const site = await siteOf(domain);
    progress();
    if (site === null) return { kind: 'unshaped' };
    if ('kind' in site) return { kind: 'refused', failure: site };
    const limits = limitsFor(options.rules, options.defaults, site.hosts);
    const state = stateOf(site.key, limits);
    state.entering += 1;
    try {
      return await enterState(site.key, limits, state, progress);
    } finally {
      state.entering -= 1;
      forgetIfUnused(site.key, state);
    }
  };

  /** The rate token, then an idle connection of this engine's, a new slot, or one handed back. */
  const enterState = async (key: string, limits: SiteLimits, state: SiteState, progress: () => void): Promise<SiteEntry> => {
    if (limits.ratePerSecond !== null && !(await options.store.takeToken(key, limits.ratePerSecond))) {
      const retryInMs = jitter(Math.max(options.deferMs, 1000 / limits.ratePerSecond));
      return refuse(key, 'rate', `deferred: site ${key} is at its rate limit (${limits.ratePerSecond}/s)`, retryInMs);
    }

    for (let pooled = state.idle.pop(); pooled; pooled = state.idle.pop()) {
      if (pooled.idleTimer) clearTimeout(pooled.idleTimer);
      pooled.idleTimer = null;
      const session = await revive(pooled, progress);
      if (!session) {
        retire(pooled, false);
        continue;
      }
      options.metrics.connection(key, 'reused');
      return { kind: 'lease', lease: leaseOf(pooled, state, session) };
    }

    // This engine's own slots at the site being given back (a connection found closed) are free
    // once their release lands: the claim comes after it.
    const pending = releasing.get(key);
    if (pending) await Promise.all(pending);
    const holder = `${options.engineId}/${randomBytes(6).toString('hex')}`;
    const claim = await options.store.claimSlot(key, limits.maxConnections, holder, SLOT_LEASE_MS);
    progress();
    if (claim.kind === 'backoff') {
      return refuse(key, 'backoff', `deferred: site ${key} is backed off (no MX host took a session)`, claim.retryInMs + jitter(options.deferMs));
    }
    if (claim.kind === 'slot') {
      const pooled: Pooled = { site: key, slot: claim.slot, holder, session: null, messages: 0, released: false, lost: false, idleTimer: null };
      holding.set(holder, pooled);
      if (closed) {
        retire(pooled, false);
        return { kind: 'unshaped' };
      }
      return { kind: 'lease', lease: leaseOf(pooled, state, null) };
    }

    if (claim.probing) {
      // Its backoff is over and one send probes it: the others wait for that one, without waiting
      // here for a connection the probe may hold for a whole timeout.
      return refuse(key, 'probe', `deferred: site ${key} is being probed after its backoff: one connection until a session is set up`, jitter(options.deferMs));
    }
    if (state.busy > 0) {
      // This engine's own connections fill the site: the next one to come back is handed over.
      const handed = await new Promise<Pooled | null>((resolve) => {
        const waiter = (pooled: Pooled | null) => {
          clearTimeout(timer);
          resolve(pooled);
        };
        const timer = setTimeout(() => {
          state.waiters = state.waiters.filter((other) => other !== waiter);
          resolve(null);
        }, Math.min(HANDOFF_WAIT_MS, options.deferMs));
        state.waiters.push(waiter);
      });
      progress();
      if (handed) {
        const session = await revive(handed, progress);
        if (session) {
          options.metrics.connection(key, 'reused');
          return { kind: 'lease', lease: leaseOf(handed, state, session) };
        }
        retire(handed, false);
      }
    }
    return refuse(key, 'slot', `deferred: site ${key} has no free connection (at most ${limits.maxConnections})`, jitter(options.deferMs));
  };

  return {
    enter,
    held(site) {
      const state = sites.get(site);
      return { idle: state?.idle.length ?? 0, busy: state?.busy ?? 0 };
    },
    get trackedSites() {
      return sites.size;
    },
    async close() {
      closed = true;
      clearInterval(renewTimer);
      const releases: Promise<void>[] = [];
      for (const state of sites.values()) {
        for (const waiter of state.waiters.splice(0)) waiter(null);
        for (const pooled of [...state.idle]) releases.push(retire(pooled, true));
      }
      // Before the engine closes its pool; slots of sends still under way are given back as those
      // sends finish.
      await Promise.all(releases);
    },
  };
}
