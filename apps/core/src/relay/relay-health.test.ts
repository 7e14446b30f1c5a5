// The health of a relay host (relay-health.ts) against a relay whose every send the test settles
// by hand, on a clock the test moves: full concurrency while healthy, one probe at a time once a
// session failed, a backoff that grows and ends, and the wave of sends under way counted once;
// and what a real Postfix answers a relay client it limits or does not relay for (replies captured
// from Postfix 3.7, docs/core.md "Against a real Postfix"), judged by the shipped reply rules.
import { createLogger, prometheus } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { defaultReplyRules, relayVerdictOf } from '../delivery/classify-reply.ts';
import type { OutboundMessage, Relay, SendFailure, SendResult } from './relay.ts';
import { registerRelayGauges } from './relay-gauges.ts';
import { createRelayHealth, type RelayHealth } from './relay-health.ts';
import type { DeferralReason, SiteMetrics } from './site-metrics.ts';

const KEY = 'relay.test:25';
const BACKOFF_MS = 60_000;
const DEFER_MS = 5_000;

const message: OutboundMessage = { deliveryId: 'd', envelopeFrom: 'a@example.test', recipient: 'b@example.test', raw: Buffer.from('x') };

const SENT: SendResult = { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'queued' } };
const failed = (failure: Partial<SendFailure>): SendResult => ({ ok: false, failure: { kind: 'connection', reply: null, dataSent: false, interrupted: false, message: 'ECONNECTION: no', ...failure } });
const SETUP_TIMEOUT = failed({ kind: 'timeout', message: 'ETIMEDOUT: Greeting never received', inSetup: true });
const REFUSED = failed({ kind: 'connection', message: 'ECONNREFUSED: connect ECONNREFUSED', inSetup: true });

/** A relay whose sends wait until the test settles them, in order. */
function handRelay() {
  const pending: Array<(result: SendResult) => void> = [];
  const relay: Relay = {
    name: 'smtp://relay.test:25',
    send: () => new Promise<SendResult>((resolve) => pending.push(resolve)),
    interrupt() {},
    close: async () => {},
  };
  return {
    relay,
    /** Sends that reached the relay and are not settled yet. */
    get open() {
      return pending.length;
    },
    settle(result: SendResult) {
      const next = pending.shift();
      if (!next) throw new Error('no send to settle');
      next(result);
    },
  };
}

function setup(options: { verdicts?: boolean } = {}) {
  let clock = 1_000;
  const counts = { deferrals: [] as DeferralReason[], backoffs: 0 };
  const metrics: SiteMetrics = {
    attempt() {},
    deferral: (_site, reason) => counts.deferrals.push(reason),
    connection() {},
    tls() {},
    backoff: () => {
      counts.backoffs += 1;
    },
  };
  const health: RelayHealth = createRelayHealth({
    backoffMs: BACKOFF_MS,
    deferMs: DEFER_MS,
    metrics,
    logger: createLogger('relay-health-test', 'silent'),
    now: () => clock,
    random: () => 0.5,
    ...(options.verdicts ? { verdictOf: (failure: SendFailure) => relayVerdictOf(defaultReplyRules(), failure) } : {}),
  });
  const hand = handRelay();
  const guarded = health.guard(KEY, hand.relay);
  return {
    health,
    hand,
    guarded,
    counts,
    send: () => guarded.send(message),
    advance(ms: number) {
      clock += ms;
    },
  };
}

/** Lets settled sends run their endings. */
const flush = () => new Promise((resolve) => setImmediate(resolve));

function deferredFailure(result: SendResult): SendFailure {
  if (result.ok || result.failure.kind !== 'deferred') throw new Error(`not deferred: ${JSON.stringify(result)}`);
  return result.failure;
}

describe('a healthy relay', () => {
  it('takes every send at once, however many, and a refused recipient keeps it healthy', async () => {
    const t = setup();
    const sends = Array.from({ length: 8 }, () => t.send());
    expect(t.hand.open).toBe(8);
    t.hand.settle(failed({ kind: 'reply', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' }, message: '550 no such user' }));
    for (let n = 1; n < 8; n++) t.hand.settle(SENT);
    await Promise.all(sends);
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    expect(t.counts.deferrals).toEqual([]);
  });

  it('is not suspected after a failure that is not the session setup, nor after an interrupt', async () => {
    const t = setup();
    const sends = [t.send(), t.send()];
    t.hand.settle(failed({ kind: 'timeout', dataSent: true, message: 'ETIMEDOUT: Timeout' }));
    t.hand.settle(failed({ ...SETUP_TIMEOUT, interrupted: true, inSetup: true, kind: 'timeout' }));
    await Promise.all(sends);
    expect(t.health.conditionOf(KEY)).toBe('healthy');
  });
});

describe('a relay whose session could not be set up', () => {
  it('gets one probe at a time; every other send is deferred at once, without reaching the relay', async () => {
    const t = setup();
    const first = t.send();
    t.hand.settle(SETUP_TIMEOUT);
    expect(await first).toEqual(SETUP_TIMEOUT);
    expect(t.health.conditionOf(KEY)).toBe('suspect');

    const probe = t.send();
    expect(t.hand.open).toBe(1);
    const others = await Promise.all([t.send(), t.send(), t.send()]);
    expect(t.hand.open).toBe(1);
    for (const other of others) {
      const failure = deferredFailure(other);
      expect(failure.retryInMs).toBe(DEFER_MS);
      expect(failure.message).toBe(`deferred: relay ${KEY} is being probed by another send: its last session could not be set up (ETIMEDOUT: Greeting never received)`);
    }
    expect(t.counts.deferrals).toEqual(['probe', 'probe', 'probe']);

    // The probe gets through: full concurrency again.
    t.hand.settle(SENT);
    expect(await probe).toEqual(SENT);
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    const sends = [t.send(), t.send(), t.send()];
    expect(t.hand.open).toBe(3);
    for (let n = 0; n < 3; n++) t.hand.settle(SENT);
    await Promise.all(sends);
    expect(t.counts.backoffs).toBe(0);
  });

  it('counts the wave of sends under way when it went quiet once: still one probe, not a backoff', async () => {
    const t = setup();
    const wave = Array.from({ length: 4 }, () => t.send());
    for (let n = 0; n < 4; n++) t.hand.settle(SETUP_TIMEOUT);
    await Promise.all(wave);
    await flush();
    expect(t.health.conditionOf(KEY)).toBe('suspect');
    const probe = t.send();
    expect(t.hand.open).toBe(1);
    t.hand.settle(SENT);
    await probe;
    expect(t.health.conditionOf(KEY)).toBe('healthy');
  });
});

describe('a relay whose probe failed too', () => {
  /** Healthy -> suspect -> backed off, on refused connections. */
  async function backedOff() {
    const t = setup();
    const first = t.send();
    t.hand.settle(REFUSED);
    await first;
    const probe = t.send();
    t.hand.settle(REFUSED);
    expect(await probe).toEqual(REFUSED);
    return t;
  }

  it('is backed off: sends deferred to the end of the backoff without reaching the relay', async () => {
    const t = await backedOff();
    expect(t.health.conditionOf(KEY)).toBe('backed_off');
    expect(t.counts.backoffs).toBe(1);
    t.advance(10_000);
    const failure = deferredFailure(await t.send());
    expect(t.hand.open).toBe(0);
    expect(failure.retryInMs).toBe(BACKOFF_MS - 10_000 + DEFER_MS);
    expect(failure.message).toBe(`deferred: relay ${KEY} is backed off: 2 sessions in a row could not be set up (last: ECONNREFUSED: connect ECONNREFUSED)`);
    expect(t.counts.deferrals).toEqual(['backoff']);
  });

  it('is probed once the backoff is over; each failed probe doubles the backoff, at most 32 times', async () => {
    const t = await backedOff();
    const backoffs: number[] = [];
    for (let n = 0; n < 7; n++) {
      // Just before the end: still deferred; its wait is what is left plus the jittered defer.
      const before = deferredFailure(await t.send());
      backoffs.push((before.retryInMs ?? 0) - DEFER_MS);
      t.advance((before.retryInMs ?? 0) - DEFER_MS);
      const probe = t.send();
      expect(t.hand.open).toBe(1);
      deferredFailure(await t.send());
      t.hand.settle(SETUP_TIMEOUT);
      await probe;
    }
    expect(backoffs).toEqual([1, 2, 4, 8, 16, 32, 32].map((times) => times * BACKOFF_MS));
    expect(t.counts.backoffs).toBe(8);
  });

  it('recovers with a probe that gets a session, and starts from the first backoff next time', async () => {
    const t = await backedOff();
    t.advance(BACKOFF_MS);
    const probe = t.send();
    t.hand.settle(SENT);
    await probe;
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    const again = [t.send(), t.send()];
    expect(t.hand.open).toBe(2);
    t.hand.settle(REFUSED);
    t.hand.settle(SENT);
    await Promise.all(again);
    // A send that got a session after the failure began: healthy again.
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    const first = t.send();
    t.hand.settle(REFUSED);
    await first;
    const probe2 = t.send();
    t.hand.settle(REFUSED);
    await probe2;
    expect((deferredFailure(await t.send()).retryInMs ?? 0) - DEFER_MS).toBe(BACKOFF_MS);
  });

  it('is forgotten once every relay guarded under its identity is closed: the next one starts healthy', async () => {
    // routed-relay.ts closes a route's pool unused for 5 minutes (a long backoff leaves it unused)
    // and makes a new one, under the same identity, at the route's next send; docs/core.md says
    // that send starts healthy. Every identity ever used (a route's host, TLS and credentials,
    // changed by hand over the years) was also kept for the engine's life.
    const t = await backedOff();
    const other = handRelay();
    const secondPool = t.health.guard(KEY, other.relay);
    await t.guarded.close();
    // Another pool under the identity is still open: its health is kept.
    expect(t.health.conditionOf(KEY)).toBe('backed_off');
    deferredFailure(await secondPool.send(message));
    await secondPool.close();
    expect(t.health.trackedRelays).toBe(0);
    const next = t.health.guard(KEY, other.relay);
    const send = next.send(message);
    expect(other.open).toBe(1);
    other.settle(SENT);
    expect(await send).toEqual(SENT);
    expect(t.health.trackedRelays).toBe(1);
  });

  it('shares its health between the relays guarded under one identity, and only those', async () => {
    const t = await backedOff();
    const other = handRelay();
    const secondPool = t.health.guard(KEY, other.relay);
    deferredFailure(await secondPool.send(message));
    expect(other.open).toBe(0);
    // The same host used with another TLS requirement or other credentials has its own health.
    const otherUse = t.health.guard(KEY, other.relay, `${KEY} required postern`);
    const viaOtherUse = otherUse.send(message);
    expect(other.open).toBe(1);
    other.settle(SENT);
    await viaOtherUse;
    const elsewhere = t.health.guard('other.test:25', other.relay);
    const send = elsewhere.send(message);
    expect(other.open).toBe(1);
    other.settle(SENT);
    await send;
  });
});

describe('mail_relay_backed_off (relay-gauges.ts), read at each scrape', () => {
  /** The gauge's series as a scrape finds them: `use relay` -> value. */
  async function scrape(registry: prometheus.Registry): Promise<Record<string, number>> {
    const metric = await registry.getSingleMetric('mail_relay_backed_off')?.get();
    return Object.fromEntries((metric?.values ?? []).map((v) => [`${v.labels.use} ${v.labels.relay}`, v.value]));
  }
  function scraped(t: ReturnType<typeof setup>) {
    const registry = new prometheus.Registry();
    registerRelayGauges(registry, t.health);
    return () => scrape(registry);
  }

  it('is 0 while healthy and after a first failure alone; 1 once the probe failed, through the backoff and the next probe', async () => {
    const t = setup();
    const read = scraped(t);
    expect(await read()).toEqual({ [`route ${KEY}`]: 0 });
    const first = t.send();
    t.hand.settle(REFUSED);
    await first;
    expect(t.health.conditionOf(KEY)).toBe('suspect');
    expect(await read()).toEqual({ [`route ${KEY}`]: 0 });
    const probe = t.send();
    t.hand.settle(REFUSED);
    await probe;
    expect(await read()).toEqual({ [`route ${KEY}`]: 1 });
    // The backoff is over and nothing has been sent yet: still held back, nothing proved it healthy.
    t.advance(BACKOFF_MS);
    expect(await read()).toEqual({ [`route ${KEY}`]: 1 });
    // The next probe is under way (suspect again): still 1, so an alert's `for:` is not restarted.
    const second = t.send();
    expect(t.health.conditionOf(KEY)).toBe('suspect');
    expect(await read()).toEqual({ [`route ${KEY}`]: 1 });
    t.hand.settle(SENT);
    await second;
    expect(await read()).toEqual({ [`route ${KEY}`]: 0 });
  });

  it('tells the default relay from a route, and drops the series with the last pool of a relay', async () => {
    const t = setup();
    const read = scraped(t);
    const other = handRelay();
    const defaultRelay = t.health.guard('smtp.test:587', other.relay, undefined, 'default');
    // A route to the same host:port with other credentials: its own health, its own use.
    const routeToIt = t.health.guard('smtp.test:587', other.relay, 'smtp.test:587 required postern', 'route');
    expect(await read()).toEqual({ [`route ${KEY}`]: 0, 'default smtp.test:587': 0, 'route smtp.test:587': 0 });
    const first = defaultRelay.send(message);
    other.settle(REFUSED);
    await first;
    const probe = defaultRelay.send(message);
    other.settle(REFUSED);
    await probe;
    expect(await read()).toEqual({ [`route ${KEY}`]: 0, 'default smtp.test:587': 1, 'route smtp.test:587': 0 });
    // The route's pool goes (unused for 5 minutes): its series goes with its health.
    await routeToIt.close();
    expect(await read()).toEqual({ [`route ${KEY}`]: 0, 'default smtp.test:587': 1 });
    for (let n = 0; n < 2; n++) {
      const send = t.send();
      t.hand.settle(REFUSED);
      await send;
    }
    expect(await read()).toEqual({ [`route ${KEY}`]: 1, 'default smtp.test:587': 1 });
    await t.guarded.close();
    expect(await read()).toEqual({ 'default smtp.test:587': 1 });
    await defaultRelay.close();
    expect(await read()).toEqual({});
  });
});

// Verbatim Postfix 3.7 replies (smtpd with anvil limits, reject_unauth_destination), as
// smtp-relay.ts reports them: the greeting's 421 in session setup, the others to MAIL FROM and RCPT TO.
const POSTFIX_TOO_MANY_CONNECTIONS = failed({
  kind: 'reply',
  reply: { code: 421, enhanced: '4.7.0', text: 'relay.relaypeers.test Error: too many connections from 127.0.0.1' },
  message: 'EPROTOCOL: Invalid greeting. response=421 4.7.0 relay.relaypeers.test Error: too many connections from 127.0.0.1',
  inSetup: true,
});
const POSTFIX_TOO_MUCH_MAIL = failed({
  kind: 'reply',
  reply: { code: 450, enhanced: '4.7.1', text: 'Error: too much mail from 127.0.0.1' },
  stage: 'mail',
  message: 'EENVELOPE: Mail command failed: 450 4.7.1 Error: too much mail from 127.0.0.1',
});
const POSTFIX_RELAY_ACCESS_DENIED = failed({
  kind: 'reply',
  reply: { code: 554, enhanced: '5.7.1', text: '<ext1@elsewhere.example>: Relay access denied' },
  stage: 'rcpt',
  message: 'EENVELOPE: Recipient command failed: 554 5.7.1 <ext1@elsewhere.example>: Relay access denied',
});
const POSTFIX_HELO_REJECTED = failed({
  kind: 'reply',
  reply: { code: 504, enhanced: '5.5.2', text: '<vm>: Helo command rejected: need fully-qualified hostname' },
  stage: 'rcpt',
  message: 'EENVELOPE: Recipient command failed: 504 5.5.2 <vm>: Helo command rejected: need fully-qualified hostname',
});
const USER_UNKNOWN = failed({
  kind: 'reply',
  reply: { code: 550, enhanced: '5.1.1', text: '<unknown1@dest.relaypeers.test>: Recipient address rejected: User unknown' },
  stage: 'rcpt',
  message: 'EENVELOPE: Recipient command failed: 550 5.1.1 <unknown1@dest.relaypeers.test>: Recipient address rejected: User unknown',
});

describe('a relay that refuses more connections than this engine has open (smtpd_client_connection_count_limit)', () => {
  it('defers the refused send without an attempt, and holds this engine to the connections it took, one more after each backoff', async () => {
    const t = setup({ verdicts: true });
    const sends = [t.send(), t.send(), t.send()] as const;
    expect(t.hand.open).toBe(3);
    // The third connection is refused at the greeting while two others are under way.
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    const refused = deferredFailure(await sends[0]);
    expect(refused.retryInMs).toBe(DEFER_MS);
    expect(refused.message).toBe(`deferred: relay ${KEY} refused a connection beyond the 2 this engine had open (421 4.7.0 relay.relaypeers.test Error: too many connections from 127.0.0.1)`);
    // Not a relay that is down: every other send still goes, two at a time.
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    const overCap = deferredFailure(await t.send());
    expect(overCap.message).toBe(`deferred: relay ${KEY} takes at most 2 connections from this engine at once (421 4.7.0 relay.relaypeers.test Error: too many connections from 127.0.0.1)`);
    expect(t.hand.open).toBe(2);
    t.hand.settle(SENT);
    await sends[1];
    const next = t.send();
    expect(t.hand.open).toBe(2);
    expect(t.counts.deferrals).toEqual(['connections']);
    t.hand.settle(SENT);
    t.hand.settle(SENT);
    await Promise.all([sends[2], next]);
    // After the backoff the cap grows by one: back to the three the engine wanted.
    t.advance(BACKOFF_MS);
    const later = [t.send(), t.send(), t.send()];
    expect(t.hand.open).toBe(3);
    deferredFailure(await t.send());
    expect(t.counts.deferrals).toEqual(['connections', 'connections']);
    for (let n = 0; n < 3; n++) t.hand.settle(SENT);
    await Promise.all(later);
    // Above that, a backoff later, it holds nothing back and goes.
    t.advance(BACKOFF_MS);
    const unbounded = [t.send(), t.send(), t.send(), t.send(), t.send()];
    expect(t.hand.open).toBe(5);
    for (let n = 0; n < 5; n++) t.hand.settle(SENT);
    await Promise.all(unbounded);
    expect(t.counts.backoffs).toBe(0);
  });

  it('is relearned with one refusal when the relay still refuses as the cap grows; one under way is the least', async () => {
    const t = setup({ verdicts: true });
    const sends = [t.send(), t.send(), t.send()] as const;
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    await sends[0];
    t.hand.settle(SENT);
    t.hand.settle(SENT);
    await Promise.all(sends.slice(1));
    // The cap of 2 grows to 3 after the backoff; the third connection is refused again: 2 again.
    t.advance(BACKOFF_MS);
    const grown = [t.send(), t.send(), t.send()] as const;
    expect(t.hand.open).toBe(3);
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    deferredFailure(await grown[0]);
    t.hand.settle(SENT);
    t.hand.settle(SENT);
    await Promise.all(grown.slice(1));
    const two = [t.send(), t.send()] as const;
    deferredFailure(await t.send());
    expect(t.hand.open).toBe(2);
    t.hand.settle(SENT);
    t.hand.settle(SENT);
    await Promise.all(two);
    // Refused with none of ours under way (the relay still counted a session just closed): one at
    // a time, not a throttle of every send.
    const alone = t.send();
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    expect(deferredFailure(await alone).retryInMs).toBe(DEFER_MS);
    const one = t.send();
    deferredFailure(await t.send());
    expect(t.hand.open).toBe(1);
    t.hand.settle(SENT);
    await one;
    expect(t.health.conditionOf(KEY)).toBe('healthy');
  });

  it('without a verdict on replies, such a refusal is a failed session, as any refused greeting', async () => {
    const t = setup();
    const sends = [t.send(), t.send()] as const;
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    expect(await sends[0]).toEqual(POSTFIX_TOO_MANY_CONNECTIONS);
    t.hand.settle(SENT);
    await sends[1];
  });
});

describe('a relay that throttles this engine (smtpd_client_message_rate_limit)', () => {
  it('defers the refused sends without an attempt, holds every send back for the backoff, doubled while it goes on, and not after a message went', async () => {
    const t = setup({ verdicts: true });
    const sends = [t.send(), t.send()] as const;
    t.hand.settle(POSTFIX_TOO_MUCH_MAIL);
    t.hand.settle(POSTFIX_TOO_MUCH_MAIL);
    const [first, second] = (await Promise.all(sends)).map(deferredFailure);
    // The sends under way when it began are refused together: one throttle, not two.
    expect(first?.retryInMs).toBe(BACKOFF_MS + DEFER_MS);
    expect(second?.retryInMs).toBe(BACKOFF_MS + DEFER_MS);
    expect(first?.message).toBe(`deferred: relay ${KEY} throttles this engine (450 4.7.1 Error: too much mail from 127.0.0.1)`);
    t.advance(10_000);
    const held = deferredFailure(await t.send());
    expect(held.retryInMs).toBe(BACKOFF_MS - 10_000 + DEFER_MS);
    expect(t.hand.open).toBe(0);
    expect(t.counts.deferrals).toEqual(['throttle']);
    // The session was set up: the relay is not down, and nothing pages for it.
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    expect(t.health.relays()).toEqual([{ site: KEY, use: 'route', backedOff: false }]);

    t.advance(BACKOFF_MS);
    const again = t.send();
    expect(t.hand.open).toBe(1);
    t.hand.settle(POSTFIX_TOO_MUCH_MAIL);
    expect(deferredFailure(await again).retryInMs).toBe(2 * BACKOFF_MS + DEFER_MS);

    t.advance(2 * BACKOFF_MS);
    const accepted = t.send();
    t.hand.settle(SENT);
    expect(await accepted).toEqual(SENT);
    const afterSent = t.send();
    t.hand.settle(POSTFIX_TOO_MUCH_MAIL);
    expect(deferredFailure(await afterSent).retryInMs).toBe(BACKOFF_MS + DEFER_MS);
  });

  it('takes a refused connection with no other send under way (smtpd_client_connection_rate_limit) as a throttle', async () => {
    const t = setup({ verdicts: true });
    const send = t.send();
    t.hand.settle(POSTFIX_TOO_MANY_CONNECTIONS);
    expect(deferredFailure(await send).retryInMs).toBe(BACKOFF_MS + DEFER_MS);
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    deferredFailure(await t.send());
    expect(t.hand.open).toBe(0);
  });

  it("leaves a refusal of the recipient alone: it is the delivery's, and the relay stays healthy", async () => {
    const t = setup({ verdicts: true });
    const sends = [t.send(), t.send()] as const;
    t.hand.settle(USER_UNKNOWN);
    t.hand.settle(USER_UNKNOWN);
    expect(await sends[0]).toEqual(USER_UNKNOWN);
    expect(await sends[1]).toEqual(USER_UNKNOWN);
    expect(t.health.conditionOf(KEY)).toBe('healthy');
    const next = t.send();
    expect(t.hand.open).toBe(1);
    t.hand.settle(SENT);
    await next;
  });
});

describe('a relay that does not relay for this engine (reject_unauth_destination)', () => {
  it('is probed, then backed off and reported like a relay that is down, instead of failing every delivery', async () => {
    const t = setup({ verdicts: true });
    const registry = new prometheus.Registry();
    registerRelayGauges(registry, t.health);
    const first = t.send();
    t.hand.settle(POSTFIX_RELAY_ACCESS_DENIED);
    // The attempt keeps the relay's reply (classified retry, relay_denied: classify-reply.test.ts).
    expect(await first).toEqual(POSTFIX_RELAY_ACCESS_DENIED);
    expect(t.health.conditionOf(KEY)).toBe('suspect');
    const probe = t.send();
    deferredFailure(await t.send());
    t.hand.settle(POSTFIX_RELAY_ACCESS_DENIED);
    await probe;
    expect(t.health.conditionOf(KEY)).toBe('backed_off');
    expect(t.counts.backoffs).toBe(1);
    const held = deferredFailure(await t.send());
    expect(held.message).toBe(`deferred: relay ${KEY} is backed off: 2 sessions in a row could not be set up (last: ${POSTFIX_RELAY_ACCESS_DENIED.ok ? '' : POSTFIX_RELAY_ACCESS_DENIED.failure.message})`);
    const metric = await registry.getSingleMetric('mail_relay_backed_off')?.get();
    expect(metric?.values.map((v) => v.value)).toEqual([1]);
    // Fixed at the relay: the next probe's message is accepted, and every send goes again.
    t.advance(BACKOFF_MS);
    const fixed = t.send();
    t.hand.settle(SENT);
    await fixed;
    expect(t.health.conditionOf(KEY)).toBe('healthy');
  });

  it("backs off a relay that refuses the engine's EHLO name (reject_non_fqdn_helo_hostname) the same way", async () => {
    const t = setup({ verdicts: true });
    const first = t.send();
    t.hand.settle(POSTFIX_HELO_REJECTED);
    await first;
    const probe = t.send();
    t.hand.settle(POSTFIX_HELO_REJECTED);
    await probe;
    expect(t.health.conditionOf(KEY)).toBe('backed_off');
  });
});
