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
// Two kinds of refusal are about this engine at the relay, not about the recipient; the engine
// tells them by the category reply-patterns.txt gives the reply (options.verdictOf, engine.ts):
//   the relay takes no mail from this engine at all ("554 5.7.1 <...>: Relay access denied": the
//     engine's address is not in the relay's mynetworks; "530 5.7.0 Authentication required") ->
//     a session that could not be set up, as above: one probe, then backed off, with
//     mail_relay_backed_off and its alert. Classified per delivery alone, the operator's one
//     mistake failed every delivery for good, each with a bounce to its sender;
//   the relay says this engine sends too fast (Postfix's anvil: "421 4.7.0 ... Error: too many
//     connections from ...", "450 4.7.1 Error: too much mail from ...") -> the send is deferred,
//     not an attempt: the retry ladder is the recipient's, and the relay's limit spent it (8
//     workers against smtpd_client_connection_count_limit = 2 failed three sends in four, and
//     dead-lettered mail). A connection refused so while other sends of this engine to the relay
//     are under way caps this engine's sends to it at those (Postfix lowers a destination's
//     concurrency on such a failure), and the cap grows by one each MAIL_SHAPING_BACKOFF until it
//     is above what the engine wanted when it was refused (Postfix's positive feedback), so a
//     relay's limit is relearned with a refusal now and then, not a burst of them; any other such
//     refusal holds every send to the relay back for MAIL_SHAPING_BACKOFF, doubled for each one in
//     a row (at most 32 times), then sends go at full speed again.
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

/** What a refusal says about this engine at the relay (header): it takes no mail from this engine
 *  at all, or this engine sends too fast; null: it is about the recipient or the message. */
export type RelayVerdict = 'refuses_engine' | 'throttles' | null;

export interface RelayHealthOptions {
  /** MAIL_SHAPING_BACKOFF: the first backoff of a relay whose probe failed, and how long a relay
   *  that throttles this engine is left alone (or held to fewer connections). */
  backoffMs: number;
  /** The verdict on a failed send (engine.ts: by the reply's category in reply-patterns.txt);
   *  absent: none is about the engine. */
  verdictOf?: (failure: SendFailure) => RelayVerdict;
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
  /** Sends to the relay under way now (admitted, not finished). */
  inFlight: number;
  /** The relay refused a connection while this many other sends were under way: no more at once
   *  until capUntil (null: no cap). */
  cap: number | null;
  /** The cap grows by one then. */
  capUntil: number;
  /** Sends the engine had under way when the cap began, the refused one included: a cap above it
   *  holds nothing back, and goes. */
  capFrom: number;
  /** The relay throttles this engine: every send is held back until then. */
  throttledUntil: number;
  /** Throttles in a row, without a message accepted between them. */
  throttles: number;
  /** The reply that set the cap or the throttle. */
  throttleReason: string;
}

/** The relay's session could not be set up: refused or unanswered connection, greeting, EHLO,
 *  STARTTLS or AUTH (smtp-relay.ts marks these). Not the engine's own interrupt. */
export function isSetupFailure(result: SendResult): boolean {
  return !result.ok && result.failure.inSetup === true && !result.failure.interrupted;
}

/** A session was set up: the relay accepted the message or answered the transaction (other than
 *  refusing this engine altogether). */
function isSessionUp(result: SendResult, verdict: RelayVerdict): boolean {
  return result.ok || (!result.failure.inSetup && result.failure.kind === 'reply' && verdict !== 'refuses_engine');
}

function describeFailure(failure: SendFailure): string {
  const { reply } = failure;
  return reply?.code ? `${reply.code} ${reply.enhanced ?? ''} ${reply.text}`.replace(/\s+/g, ' ').trim() : failure.message;
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
      state = {
        condition: 'healthy',
        failures: 0,
        until: 0,
        probing: false,
        epoch: 0,
        reason: '',
        guards: 0,
        defaultGuards: 0,
        site,
        inFlight: 0,
        cap: null,
        capUntil: 0,
        capFrom: 0,
        throttledUntil: 0,
        throttles: 0,
        throttleReason: '',
      };
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
    if (state.throttledUntil > 0 || state.cap !== null) {
      const at = now();
      if (at < state.throttledUntil) {
        options.metrics.deferral(key, 'throttle');
        const message = `deferred: relay ${key} throttles this engine (${state.throttleReason})`;
        return { go: false, result: deferral(message, Math.ceil(state.throttledUntil - at) + jitter(options.deferMs)) };
      }
      if (state.cap !== null && at >= state.capUntil) {
        state.cap += 1;
        state.capUntil = at + options.backoffMs;
        if (state.cap > state.capFrom) state.cap = null;
      }
      if (state.cap !== null && state.inFlight >= state.cap) {
        options.metrics.deferral(key, 'connections');
        const message = `deferred: relay ${key} takes at most ${state.cap} connections from this engine at once (${state.throttleReason})`;
        return { go: false, result: deferral(message, jitter(options.deferMs)) };
      }
    }
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

  /** A send the relay refused for this engine's speed: deferred, and the next ones held back
   *  (header). `others`: this engine's other sends to the relay under way when it was refused. */
  const throttle = (key: string, state: HostState, failure: SendFailure, others: number): SendResult => {
    const reason = describeFailure(failure);
    const at = now();
    state.throttleReason = reason;
    if (failure.inSetup && (others > 0 || state.cap !== null)) {
      // A connection refused beyond those the relay holds open for this engine: no more than those
      // (at least one: refused with none under way while capped, the relay still counts a session
      // of ours that has just closed).
      const cap = Math.max(1, Math.min(state.cap ?? others, others));
      if (state.cap === null) state.capFrom = others + 1;
      // One warning when the relay starts to refuse; the sends already opening when it did lower
      // the cap in a burst of refusals, each at info.
      const fields = { relay: key, connections: cap, forMs: options.backoffMs, reason };
      const what = 'relay refused another connection from this engine: no more at once than it took';
      if (state.cap === null) log.warn(fields, what);
      else if (cap < state.cap) log.info(fields, what);
      state.cap = cap;
      state.capUntil = at + options.backoffMs;
      return deferral(`deferred: relay ${key} refused a connection beyond the ${others} this engine had open (${reason})`, jitter(options.deferMs));
    }
    // The sends under way when the relay began to throttle are refused together: counted once.
    if (at >= state.throttledUntil) {
      state.throttles += 1;
      const waitMs = options.backoffMs * 2 ** Math.min(state.throttles - 1, MAX_DOUBLINGS);
      state.throttledUntil = at + waitMs;
      log.warn({ relay: key, throttles: state.throttles, retryInMs: waitMs, reason }, 'relay throttles this engine: its deliveries wait without connecting');
    }
    return deferral(`deferred: relay ${key} throttles this engine (${reason})`, Math.ceil(state.throttledUntil - at) + jitter(options.deferMs));
  };

  /** What a finished send says about its relay host; the result the send gives (a throttle deferred). */
  const settle = (key: string, state: HostState, startedIn: number, result: SendResult, others: number): SendResult => {
    const verdict = result.ok ? null : (options.verdictOf?.(result.failure) ?? null);
    if (result.ok) state.throttles = 0;
    if (isSessionUp(result, verdict)) {
      if (state.condition !== 'healthy') {
        log.info({ relay: key, failures: state.failures }, 'relay recovered: a session was set up, sends go at full concurrency again');
        become(state, 'healthy');
      }
      state.failures = 0;
      return verdict === 'throttles' && !result.ok ? throttle(key, state, result.failure, others) : result;
    }
    if (verdict === 'throttles' && !result.ok && !result.failure.interrupted) return throttle(key, state, result.failure, others);
    if (result.ok || !(isSetupFailure(result) || verdict === 'refuses_engine') || startedIn !== state.epoch) return result;
    state.failures += 1;
    state.reason = result.failure.message;
    if (state.condition === 'healthy') {
      become(state, 'suspect');
      if (verdict === 'refuses_engine') log.error({ relay: key, reason: state.reason }, 'the relay refuses mail from this engine: one send at a time goes to it until it takes one');
      else log.warn({ relay: key, reason: state.reason }, 'relay session could not be set up: one send at a time goes to it until one is');
      return result;
    }
    const backoffMs = options.backoffMs * 2 ** Math.min(state.failures - 2, MAX_DOUBLINGS);
    state.until = now() + backoffMs;
    become(state, 'backed_off');
    options.metrics.backoff(key);
    log.warn({ relay: key, failures: state.failures, retryInMs: backoffMs, reason: state.reason }, 'relay backed off: its sessions could not be set up; its deliveries wait without connecting');
    return result;
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
          state.inFlight += 1;
          let result: SendResult | null = null;
          try {
            result = await relay.send(message, progress);
          } finally {
            state.inFlight -= 1;
            if (admitted.probe) state.probing = false;
          }
          return settle(key, state, startedIn, result, state.inFlight);
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
