// Health of each relay host of smtp mode (MAIL_SMTP_ADDR's relay and every routed relay host:port;
// docs/core.md, "A relay that does not answer"). Without it a relay that accepts TCP and never
// greets held every attempt worker for MAIL_SMTP_TIMEOUT per message, and all mail to every other
// relay waited behind it. Modelled on Postfix's dead-destination detection (SCHEDULER_README):
//   healthy   -> every send goes ahead, at full concurrency; nothing is asked of anyone;
//   suspect   -> a session could not be set up: one send at a time (the probe) goes to the relay,
//                every other is deferred at once without connecting and without holding a worker;
//   backed off-> the probe failed too (a failed cohort at concurrency 1: Postfix's "dead"): every
//                send is deferred until MAIL_SHAPING_BACKOFF has passed, doubled for each failure in
//                a row (at most 32 times); then one probe again.
// A session set up (a send accepted, or a transaction the relay answered) makes it healthy again.
// A deferral has the shape of site-shaping.ts's (kind 'deferred' with retryInMs): the attempt
// worker records it without an attempt row and without spending a step of the retry ladder.
// State is per engine, in memory: the healthy path costs a field read, no PostgreSQL round trip;
// each engine finds a dead relay by itself (one wave of its own sends, then one probe at a time).
// What is backed off now is read at scrape time from the same state (relay-gauges.ts: `relays()`).
import { childLogger, type Logger } from '@postern/shared';
import type { OutboundMessage, Relay, SendFailure, SendResult } from './relay.ts';
import type { SiteMetrics } from './site-metrics.ts';

/** Backoffs double per failure in a row up to this many doublings (32x), as site-store.ts's. */
const MAX_DOUBLINGS = 5;

export type RelayCondition = 'healthy' | 'suspect' | 'backed_off';

/** default: MAIL_SMTP_ADDR's relay, through which all mail without a route goes; route: a route's. */
export type RelayUse = 'default' | 'route';

/** One relay this engine keeps a health for, as the backed-off gauge reports it. */
export interface RelayReport {
  /** Its host:port. */
  site: string;
  /** 'default' when any relay guarded under its identity is the default one. */
  use: RelayUse;
  /** Backed off, or probed after a backoff: no session set up since its probe failed. */
  backedOff: boolean;
}

export interface RelayHealthOptions {
  /** MAIL_SHAPING_BACKOFF: the first backoff of a relay whose probe failed. */
  backoffMs: number;
  /** MAIL_SHAPING_DEFER: how long a send deferred while another one probes the relay waits (jittered). */
  deferMs: number;
  metrics: SiteMetrics;
  logger: Logger;
  now?: () => number;
  /** Randomness of the deferral jitter (tests). */
  random?: () => number;
}

export interface RelayHealth {
  /** `relay`, whose sends go to `site` (its host:port, named in logs, metrics and deferrals), held
   *  back while it is not healthy. Relays guarded under one `identity` share its health: by default
   *  the host:port; engine.ts adds the TLS requirement and credentials, so a route whose certificate
   *  does not verify or whose password is wrong backs off that route's use of the host, not others'.
   *  `use` (default 'route') names it in mail_relay_backed_off: 'default' for MAIL_SMTP_ADDR's relay. */
  guard(site: string, relay: Relay, identity?: string, use?: RelayUse): Relay;
  /** What this engine thinks of a relay (tests, logs). */
  conditionOf(identity: string): RelayCondition;
  /** Every identity this engine keeps a health for, now (the gauge reads it at each scrape). */
  relays(): RelayReport[];
  /** Identities this engine keeps a health for: those with a guarded relay not closed (tests). */
  readonly trackedRelays: number;
}

interface HostState {
  condition: RelayCondition;
  /** Sessions in a row that could not be set up. */
  failures: number;
  /** Backed off until then (options.now's clock). */
  until: number;
  probing: boolean;
  /** Bumped on every change of condition: a send that began under an older one says nothing new
   *  (the wave of sends under way when a relay went quiet fails together, counted once). */
  epoch: number;
  reason: string;
  /** Guarded relays under this identity not closed yet: at none, the health is forgotten. */
  guards: number;
  /** Of those, the ones guarding the default relay. */
  defaultGuards: number;
  /** The host:port its relays were guarded for. */
  site: string;
}

/** The relay's session could not be set up: refused or unanswered connection, greeting, EHLO,
 *  STARTTLS or AUTH (smtp-relay.ts marks these). Not the engine's own interrupt. */
export function isSetupFailure(result: SendResult): boolean {
  return !result.ok && result.failure.inSetup === true && !result.failure.interrupted;
}

/** A session was set up: the relay accepted the message or answered the transaction. */
function isSessionUp(result: SendResult): boolean {
  return result.ok || (!result.failure.inSetup && result.failure.kind === 'reply');
}

function deferral(message: string, retryInMs: number): SendResult {
  const failure: SendFailure = { kind: 'deferred', reply: null, dataSent: false, interrupted: false, message: message.slice(0, 1_000), retryInMs };
  return { ok: false, failure };
}

export function createRelayHealth(options: RelayHealthOptions): RelayHealth {
  const log = childLogger(options.logger, { component: 'relay-health' });
  const now = options.now ?? (() => performance.now());
  const random = options.random ?? Math.random;
  const jitter = (ms: number) => Math.round(ms * (0.75 + random() / 2));
  // One small object per relay this engine has open: MAIL_SMTP_ADDR and the hosts of routes (with
  // their TLS requirement and credentials), which operators write by hand; never per recipient
  // domain. It goes with the last relay guarded under it (routed-relay.ts closes a route's pool
  // unused for 5 minutes): the route's next pool starts healthy, and a host, TLS requirement or
  // password no route uses any more is not kept for the engine's life.
  const hosts = new Map<string, HostState>();

  const stateOf = (key: string, site: string): HostState => {
    let state = hosts.get(key);
    if (!state) {
      state = { condition: 'healthy', failures: 0, until: 0, probing: false, epoch: 0, reason: '', guards: 0, defaultGuards: 0, site };
      hosts.set(key, state);
    }
    return state;
  };

  const become = (state: HostState, condition: RelayCondition) => {
    state.condition = condition;
    state.epoch += 1;
  };

  /** Whether a send may go now, as the probe or not; or its deferral. */
  const admit = (key: string, state: HostState): { go: true; probe: boolean } | { go: false; result: SendResult } => {
    if (state.condition === 'healthy') return { go: true, probe: false };
    const at = now();
    if (state.condition === 'backed_off') {
      if (at < state.until) {
        options.metrics.deferral(key, 'backoff');
        const message = `deferred: relay ${key} is backed off: ${state.failures} sessions in a row could not be set up (last: ${state.reason})`;
        return { go: false, result: deferral(message, Math.ceil(state.until - at) + jitter(options.deferMs)) };
      }
      // The backoff is over: the next send probes.
      become(state, 'suspect');
    }
    if (!state.probing) {
      state.probing = true;
      return { go: true, probe: true };
    }
    options.metrics.deferral(key, 'probe');
    const message = `deferred: relay ${key} is being probed by another send: its last session could not be set up (${state.reason})`;
    return { go: false, result: deferral(message, jitter(options.deferMs)) };
  };

  /** What a finished send says about its relay host. */
  const settle = (key: string, state: HostState, startedIn: number, result: SendResult) => {
    if (isSessionUp(result)) {
      if (state.condition !== 'healthy') {
        log.info({ relay: key, failures: state.failures }, 'relay recovered: a session was set up, sends go at full concurrency again');
        become(state, 'healthy');
      }
      state.failures = 0;
      return;
    }
    if (result.ok || !isSetupFailure(result) || startedIn !== state.epoch) return;
    state.failures += 1;
    state.reason = result.failure.message;
    if (state.condition === 'healthy') {
      become(state, 'suspect');
      log.warn({ relay: key, reason: state.reason }, 'relay session could not be set up: one send at a time goes to it until one is');
      return;
    }
    const backoffMs = options.backoffMs * 2 ** Math.min(state.failures - 2, MAX_DOUBLINGS);
    state.until = now() + backoffMs;
    become(state, 'backed_off');
    options.metrics.backoff(key);
    log.warn({ relay: key, failures: state.failures, retryInMs: backoffMs, reason: state.reason }, 'relay backed off: its sessions could not be set up; its deliveries wait without connecting');
  };

  return {
    guard(key, relay, identity = key, use = 'route') {
      const state = stateOf(identity, key);
      state.guards += 1;
      if (use === 'default') state.defaultGuards += 1;
      let closed = false;
      return {
        name: relay.name,
        ...(relay.discardsMessages ? { discardsMessages: true } : {}),
        async send(message: OutboundMessage, progress?: () => void): Promise<SendResult> {
          const admitted = admit(key, state);
          if (!admitted.go) return admitted.result;
          const startedIn = state.epoch;
          let result: SendResult | null = null;
          try {
            result = await relay.send(message, progress);
            return result;
          } finally {
            if (admitted.probe) state.probing = false;
            if (result) settle(key, state, startedIn, result);
          }
        },
        interrupt: () => relay.interrupt(),
        close: () => {
          if (!closed) {
            closed = true;
            state.guards -= 1;
            if (use === 'default') state.defaultGuards -= 1;
            if (state.guards === 0 && hosts.get(identity) === state) hosts.delete(identity);
          }
          return relay.close();
        },
      };
    },
    conditionOf(identity) {
      return hosts.get(identity)?.condition ?? 'healthy';
    },
    relays() {
      // A relay is backed off from its failed probe until a session is set up: through the probe
      // after each backoff too (failures stay at 2 or more until then), so the gauge does not drop
      // to 0 for the length of each probe and restart an alert's `for:`. A first failure alone
      // (suspect, one failure) is not a backoff.
      return [...hosts.values()].map((state) => ({
        site: state.site,
        use: state.defaultGuards > 0 ? 'default' : 'route',
        backedOff: state.condition !== 'healthy' && state.failures >= 2,
      }));
    },
    get trackedRelays() {
      return hosts.size;
    },
  };
}
