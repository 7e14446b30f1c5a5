// Time to detect, measured (dead-runner: the one alert that fired was not looked at; an alert that
// cannot fire is worse). A real Prometheus runs the shipped rules — their `for:` and range windows
// shortened 60 times by scripts/prometheus/shorten-rules.ts, thresholds untouched — and scrapes an
// engine, three more engines (one whose watchdog waits, one whose watchdog acts, one in smtp mode
// whose relay the test can cut), an edge and the API, all running in this process. Each fault
// Postern is built against is injected for real and the matching alert must reach `firing`, then
// resolve after recovery:
//   engine loops stalled        PosternProcessNotReady (loops check), PosternLoopHeartbeatStale
//   a loop stalled, watchdog acting  PosternLoopStalled
//   PostgreSQL down             PosternProcessNotReady, engine and edge (postgres check)
//   lookups failing at the edge PosternEdgeLookupsFailing
//   messages the edge cannot store  PosternEdgeAcceptsFailing
//   a stream of malformed commands  PosternMalformedCommands, PosternMalformedCommandsFlood
//   due work with no engine     PosternDueWorkNotClaimed (the API reports the queue), PosternProcessDown
//   the default relay refusing sessions  PosternDefaultRelayBackedOff
//   a routed relay refusing sessions     PosternRoutedRelayBackedOff
//   made-up bearer tokens, lookups held  PosternApiTokenLookupsRefused
// Each time is printed and collected in .test-results/alerts-time-to-detect.md; docs/runbook.md
// ("Time to detect") has the figures.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createAlias, createDomain, setRoute } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Api } from '../../apps/api/src/server.ts';
import type { Engine } from '../../apps/core/src/engine.ts';
import type { Relay } from '../../apps/core/src/relay/relay.ts';
import type { Edge } from '../../apps/mta/src/edge.ts';
import { shortenRules } from '../../scripts/prometheus/shorten-rules.ts';
import { startTestApi } from '../api/helpers/api.ts';
import { startFlood } from '../api/helpers/token-flood.ts';
import { queueDelivery, repoRoot, startTestEngine, unique, waitForStatus } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type PostgresFaultBench, startPostgresFaultBench } from '../faults/helpers/postgres-faults.ts';
import { COMMAND_STREAM } from '../faults/helpers/stream-producer.ts';
import { createTestDatabase, lockWaiters, startTcpProxy, type TcpProxy, type TestDatabase, waitFor } from '../harness/index.ts';
import { startTestEdge } from '../mta/helpers/edge.ts';
import { type Prometheus, startPrometheus } from './helpers/prometheus.ts';
import { type SmtpTraffic, startMessageTraffic, startRcptTraffic } from './helpers/smtp-traffic.ts';
import { type AlertMatch, type Detection, expectFiring, expectQuiet, expectResolved, reportDetections } from './helpers/time-to-detect.ts';

const FACTOR = 60;
// Short, but well above what a loaded machine delays a loop's heartbeat by (at 3 s, loops that
// merely waited for a CPU were restarted too).
const WATCHDOG_THRESHOLD = '10s';
// The relay engine's first backoff (the default is 1 minute): doubled per failed probe, 3, 6, 12,
// 24 s..., so the relay, answering again, is probed within the test's deadlines.
const RELAY_BACKOFF = '3s';
const OVERRIDES =
  `ops/prometheus/postern-alerts.yml shortened ${FACTOR}x (scripts/prometheus/shorten-rules.ts: for: 2m -> 2s, [10m] -> [10s]; thresholds as shipped); ` +
  "scrape and evaluation every 1s; readiness evaluated every 5s (the processes' default); engines with the e2e settings " +
  '(MAIL_SMTP_TIMEOUT 2s, MAIL_HEARTBEAT_INTERVAL 500ms), the stalled one with MAIL_WATCHDOG_STALL_THRESHOLD 10m, ' +
  `the watchdog one with MAIL_WATCHDOG_STALL_THRESHOLD ${WATCHDOG_THRESHOLD}, the relay one in smtp mode with MAIL_SHAPING_BACKOFF ${RELAY_BACKOFF} ` +
  `and MAIL_SHAPING_DEFER 1s; due work backdated 10 minutes (the lag threshold is 5); the edge with MAIL_POSTGRES_STATEMENT_TIMEOUT 3s`;
const DOMAIN = 'alerts.test';
const RCPT = `ops@${DOMAIN}`;
/** The relay engine's routed domain: its route's relay is routeProxy. */
const ROUTED_DOMAIN = 'routed.alerts.test';

let bench: PostgresFaultBench;
let edgeProxy: TcpProxy;
let engine: Engine;
let enginePort: number;
let edge: Edge;
let stalledDb: TestDatabase;
let stalledEngine: Engine;
let watchdogDb: TestDatabase;
let watchdogEngine: Engine;
let relayDb: TestDatabase;
let relaySink: ScriptedSmtp;
let relayProxy: TcpProxy;
/** A route's relay: the same sink through a proxy of its own, refusing from the start. */
let routeProxy: TcpProxy;
let relayEngine: Engine;
let api: Api;
let prometheus: Prometheus;
let traffic: SmtpTraffic;
/** The stalled engine's not-ready alert: detected by the second test, resolved by the last. */
let stalledNotReady: Detection | undefined;

/** A relay whose sends hang until released, past every timeout (stalled-worker): every send, or
 *  only the first (the others answer at once). */
function stallingRelay(hangs: 'every' | 'first' = 'every'): { relay: Relay; firstSendAt: number | null; release(): void } {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const stall = {
    firstSendAt: null as number | null,
    release: () => release(),
    relay: {
      name: 'stalling',
      async send() {
        if (hangs === 'every' || stall.firstSendAt === null) {
          stall.firstSendAt ??= Date.now();
          await released;
        }
        return { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'ok' } };
      },
      interrupt: () => release(),
      async close() {},
    } satisfies Relay,
  };
  return stall;
}
// The second engine's sends hang, and its watchdog waits 10 minutes: the loop stays stalled long
// enough for the heartbeat alert, as when the watchdog itself does not act (docs/runbook.md, "Stalled loop").
const stalled = stallingRelay();
// The third engine's first send hangs and its watchdog acts after WATCHDOG_THRESHOLD: it abandons
// the stuck worker and starts a fresh one, which the default watchdog does after 2 minutes.
const watchdogStall = stallingRelay('first');

function startMainEngine(httpPort = 0): Promise<Engine> {
  return startTestEngine(bench.postgres.dsn, {
    MAIL_SMTP_MODE: 'stub',
    MAIL_REDIS_MASTER_ADDR: bench.redis.addr,
    MAIL_REDIS_CONSUMER_GROUP: 'alerts',
    MAIL_POSTGRES_CONNECT_TIMEOUT: '2s',
    MAIL_INTERNAL_HTTP_ADDR: `127.0.0.1:${httpPort}`,
  });
}

function metricsAddress(process: { http: { host: string; port: number } | null }): string {
  if (!process.http) throw new Error('started without HTTP');
  return `${process.http.host}:${process.http.port}`;
}

/** Waits until the process's own /metrics says it is ready, so Prometheus starts from a ready fleet. */
async function readyGauge(address: string): Promise<void> {
  await waitFor(
    `mail_process_ready 1 at ${address}`,
    async () => (await (await fetch(`http://${address}/metrics`)).text()).match(/^mail_process_ready\{[^}]*\} \d/m)?.[0],
    (line) => line?.endsWith(' 1') === true,
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

const notReady = (instance: string): AlertMatch => ({ alertname: 'PosternProcessNotReady', labels: { instance } });

beforeAll(async () => {
  bench = await startPostgresFaultBench();
  // The edge reaches PostgreSQL through a proxy of its own: its lookups can fail alone.
  edgeProxy = await startTcpProxy(bench.postgres.proxy.host, bench.postgres.proxy.port);
  await createDomain(bench.pool, DOMAIN);
  await createAlias(bench.pool, { domain: DOMAIN, localPart: 'ops', kind: 'forward', targets: ['ops@sink.test'] });
  stalledDb = await createTestDatabase('ops-alerts-stalled');
  watchdogDb = await createTestDatabase('ops-alerts-watchdog');
  relayDb = await createTestDatabase('ops-alerts-relay');
  // The relay engine's MAIL_SMTP_ADDR: a sink behind a proxy the test can make refuse connections.
  relaySink = await startScriptedSmtp();
  relayProxy = await startTcpProxy('127.0.0.1', relaySink.port);
  routeProxy = await startTcpProxy('127.0.0.1', relaySink.port);
  [engine, edge, stalledEngine, watchdogEngine, relayEngine, api] = await Promise.all([
    startMainEngine(),
    startTestEdge(`postgres://postern:postern@${edgeProxy.host}:${edgeProxy.port}/postern_admin`, {
      MAIL_MTA_RATE_LIMIT_PER_MINUTE: '100000',
      MAIL_POSTGRES_CONNECT_TIMEOUT: '2s',
      // An accept held by a lock is cancelled after this + 1 s (the default is 15 s): failed accepts
      // then come often enough for the accepts rule's shortened 5 s window to see them every time.
      MAIL_POSTGRES_STATEMENT_TIMEOUT: '3s',
    }),
    startTestEngine(
      stalledDb.dsn,
      { MAIL_SMTP_MODE: 'stub', MAIL_ATTEMPT_WORKER_CONCURRENCY: '1', MAIL_WATCHDOG_STALL_THRESHOLD: '10m' },
      { relay: stalled.relay },
    ),
    startTestEngine(
      watchdogDb.dsn,
      { MAIL_SMTP_MODE: 'stub', MAIL_ATTEMPT_WORKER_CONCURRENCY: '1', MAIL_WATCHDOG_STALL_THRESHOLD: WATCHDOG_THRESHOLD },
      { relay: watchdogStall.relay },
    ),
    startTestEngine(relayDb.dsn, {
      MAIL_SMTP_MODE: 'smtp',
      MAIL_SMTP_ADDR: `${relayProxy.host}:${relayProxy.port}`,
      MAIL_SHAPING_BACKOFF: RELAY_BACKOFF,
      MAIL_SHAPING_DEFER: '1s',
      // Each failed probe spends a step of some delivery's ladder (deferrals spend none): enough
      // steps that the mail waiting for the relay is still there when it answers again.
      MAIL_RETRY_LADDER: Array(30).fill('1s').join(','),
    }),
    // The API on the main engine's database: it reports that queue whether an engine runs or not.
    startTestApi(bench.postgres.dsn, { MAIL_HEARTBEAT_INTERVAL: '500ms', MAIL_POSTGRES_CONNECT_TIMEOUT: '2s' }),
  ]);
  enginePort = engine.http?.port as number;
  const targets = {
    core: metricsAddress(engine),
    stalled: metricsAddress(stalledEngine),
    watchdog: metricsAddress(watchdogEngine),
    relay: metricsAddress(relayEngine),
    mta: metricsAddress(edge),
    api: `${api.http.host}:${api.http.port}`,
  };
  await Promise.all(Object.values(targets).map(readyGauge));
  const rules = shortenRules(readFileSync(path.join(repoRoot, 'ops', 'prometheus', 'postern-alerts.yml'), 'utf8'), { factor: FACTOR });
  prometheus = await startPrometheus({
    interval: '1s',
    rules,
    jobs: {
      'postern-core': [
        { address: targets.core, instance: 'core-1' },
        { address: targets.stalled, instance: 'core-stalled' },
        { address: targets.watchdog, instance: 'core-watchdog' },
        { address: targets.relay, instance: 'core-relay' },
      ],
      'postern-mta': [{ address: targets.mta, instance: 'mta-1' }],
      'postern-api': [{ address: targets.api, instance: 'api-1' }],
    },
  });
  traffic = startRcptTraffic(edge.smtp.port, RCPT, 250);
}, 180_000);

afterAll(async () => {
  reportDetections(OVERRIDES);
  stalled.release();
  watchdogStall.release();
  await traffic?.stop();
  await prometheus?.close();
  await Promise.allSettled([engine?.stop(), stalledEngine?.stop(), watchdogEngine?.stop(), relayEngine?.stop(), edge?.stop(), api?.stop()]);
  await edgeProxy?.close();
  await relayProxy?.close();
  await routeProxy?.close();
  await relaySink?.close();
  await stalledDb?.drop();
  await watchdogDb?.drop();
  await relayDb?.drop();
  await bench?.close();
  console.log(`[time-to-detect] RCPT replies during the run: ${JSON.stringify(Object.fromEntries(traffic?.counts ?? []))}`);
}, 120_000);

describe('alerts fire when Postern is in trouble, and resolve when it recovers', () => {
  it('sees every process ready, with each check as a series, and raises nothing while all is well', async () => {
    // Ten seconds of healthy scrapes in Prometheus's own history, then: no alert was even pending.
    await waitFor(
      'ten seconds of ready scrapes of every process',
      () => prometheus.query('min_over_time(mail_process_ready[10s]) and count_over_time(mail_process_ready[10s]) >= 8'),
      (samples) => samples.length === 6 && samples.every((sample) => sample.value === 1),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(await prometheus.query('count_over_time(ALERTS[10s])')).toEqual([]);
    const checks = (await prometheus.query('mail_readiness_check_ok')).map((sample) => `${sample.labels.instance} ${sample.labels.check}`).sort();
    expect(checks).toEqual([
      'api-1 postgres',
      'core-1 loops',
      'core-1 postgres',
      'core-1 redis',
      'core-relay loops',
      'core-relay postgres',
      'core-stalled loops',
      'core-stalled postgres',
      'core-watchdog loops',
      'core-watchdog postgres',
      'mta-1 postgres',
      'mta-1 smtp',
    ]);
  });

  it('engine loops stalled: the engine says it is not ready', async () => {
    await queueDelivery(stalledDb.pool, { recipient: unique('stalled') });
    const stalledAt = await waitFor('the send to hang', () => stalled.firstSendAt, (at) => at !== null, { timeoutMs: 30_000 });
    stalledNotReady = await expectFiring(prometheus, 'engine loops stalled', notReady('core-stalled'), stalledAt as number, 60_000);
    // Not before the engine itself can tell a stuck send from a slow one (MAIL_SMTP_TIMEOUT + a heartbeat).
    expect(stalledNotReady.detectMs).toBeGreaterThan(2_500);
    const [alert] = (await prometheus.alerts()).filter((a) => a.labels.alertname === 'PosternProcessNotReady' && a.labels.instance === 'core-stalled');
    expect(alert?.annotations.summary).toBe('core on core-stalled is not ready; failing: loops');
    // The heartbeat alert takes its two minutes; the last test waits for it.
  });

  it('PostgreSQL down: the engine and the edge say they are not ready, and are ready again after', async () => {
    await expectQuiet(prometheus, notReady('core-1'), 60_000);
    await expectQuiet(prometheus, notReady('mta-1'), 60_000);
    const stoppedAt = Date.now();
    await bench.postgres.stop();
    const [core, mta] = await Promise.all([
      expectFiring(prometheus, 'PostgreSQL down', notReady('core-1'), stoppedAt, 60_000),
      expectFiring(prometheus, 'PostgreSQL down', notReady('mta-1'), stoppedAt, 60_000),
    ]);
    await bench.postgres.start();
    const startedAt = Date.now();
    await Promise.all([
      expectResolved(prometheus, core, notReady('core-1'), startedAt, 90_000),
      expectResolved(prometheus, mta, notReady('mta-1'), startedAt, 90_000),
    ]);
  }, 240_000);

  it('lookups failing at the edge: the share of RCPTs answered 451 pages', async () => {
    const lookups: AlertMatch = { alertname: 'PosternEdgeLookupsFailing' };
    await expectQuiet(prometheus, lookups, 60_000);
    const before = traffic.counts.get('451') ?? 0;
    const cutAt = Date.now();
    edgeProxy.refuse(true);
    edgeProxy.cutConnections();
    const detection = await expectFiring(prometheus, 'lookups failing at the edge', lookups, cutAt, 60_000);
    expect(traffic.counts.get('451') ?? 0).toBeGreaterThan(before);
    const answered = traffic.counts.get('250') ?? 0;
    edgeProxy.refuse(false);
    const restoredAt = Date.now();
    await waitFor('RCPTs answered 250 again', () => traffic.counts.get('250') ?? 0, (n) => n > answered, { timeoutMs: 30_000 });
    await expectResolved(prometheus, detection, lookups, restoredAt, 60_000);
  }, 180_000);

  it('messages the edge cannot store: a lock on mail.messages fails every accept at the end of DATA, and that pages', async () => {
    const accepts: AlertMatch = { alertname: 'PosternEdgeAcceptsFailing' };
    await expectQuiet(prometheus, accepts, 60_000);
    // Senders of whole messages, side by side, so accepts fail often enough for the rule's window.
    const messages = startMessageTraffic(edge.smtp.port, RCPT, { senders: 6, pauseMs: 100 });
    const locker = await bench.pool.connect();
    let locked = false;
    try {
      await waitFor('messages stored', () => messages.counts.get('250') ?? 0, (n) => n >= 3, { timeoutMs: 30_000 });
      // What a migration or a manual LOCK does: writes to the table wait. RCPT lookups read the alias
      // tables and go on; reads of mail.messages (the engine's) go on too.
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE mail.messages IN EXCLUSIVE MODE');
      locked = true;
      const lockedAt = Date.now();
      const rcptsBefore = traffic.counts.get('250') ?? 0;
      const detection = await expectFiring(prometheus, 'messages the edge cannot store', accepts, lockedAt, 90_000);
      expect(messages.counts.get('451') ?? 0).toBeGreaterThan(0);
      // The edge still takes RCPTs and says it is ready: only this rule sees the fault.
      expect(traffic.counts.get('250') ?? 0).toBeGreaterThan(rcptsBefore);
      expect((await prometheus.query('mail_process_ready{instance="mta-1"}')).map((sample) => sample.value)).toEqual([1]);
      await locker.query('ROLLBACK');
      locked = false;
      const releasedAt = Date.now();
      const stored = messages.counts.get('250') ?? 0;
      await waitFor('messages stored again', () => messages.counts.get('250') ?? 0, (n) => n > stored, { timeoutMs: 30_000 });
      await expectResolved(prometheus, detection, accepts, releasedAt, 60_000);
    } finally {
      if (locked) await locker.query('ROLLBACK');
      locker.release();
      await messages.stop();
    }
  }, 240_000);

  it('a stream of malformed commands: quarantined, counted and alerted, the flood paged', async () => {
    const ticket: AlertMatch = { alertname: 'PosternMalformedCommands', labels: { failure_code: 'invalid_json' } };
    const flood: AlertMatch = { alertname: 'PosternMalformedCommandsFlood' };
    await expectQuiet(prometheus, ticket, 30_000);
    await expectQuiet(prometheus, flood, 30_000);
    let producing = true;
    let produced = 0;
    const startedAt = Date.now();
    const producer = (async () => {
      // A producer whose encoding changed: five commands a second that are not JSON.
      while (producing) {
        await bench.redis.client.xadd(COMMAND_STREAM, '*', 'schema_version', '2', 'command', `{"source":"alerts" ${produced}`);
        produced += 1;
        await delay(200);
      }
    })();
    try {
      const [first, paged] = await Promise.all([
        expectFiring(prometheus, 'malformed commands', ticket, startedAt, 60_000),
        expectFiring(prometheus, 'malformed commands', flood, startedAt, 60_000),
      ]);
      producing = false;
      await producer;
      const stoppedAt = Date.now();
      await Promise.all([expectResolved(prometheus, first, ticket, stoppedAt, 60_000), expectResolved(prometheus, paged, flood, stoppedAt, 60_000)]);
    } finally {
      producing = false;
      await producer;
    }
    await waitFor(
      `all ${produced} commands quarantined`,
      async () => (await bench.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM mail.malformed_commands WHERE failure_code = 'invalid_json'")).rows[0]?.n,
      (n) => n === produced,
      { timeoutMs: 30_000 },
    );
  }, 180_000);

  it('due work with no engine: the API reports the queue, the unclaimed due work pages, and is done once an engine runs again', async () => {
    const notClaimed: AlertMatch = { alertname: 'PosternDueWorkNotClaimed' };
    const down: AlertMatch = { alertname: 'PosternProcessDown', labels: { instance: 'core-1' } };
    await expectQuiet(prometheus, notClaimed, 30_000);
    // Every engine on this database stops (the other two have databases of their own).
    await engine.stop();
    const due = await Promise.all([1, 2, 3].map((n) => queueDelivery(bench.pool, { recipient: unique(`due-${n}`) })));
    // Due for 10 minutes already, as work that came due while the engines were gone: the rule's
    // threshold (5 minutes of lag) is the shipped one, and a test cannot wait it out.
    await bench.pool.query("UPDATE mail.deliveries SET next_attempt_at = now() - interval '10 minutes' WHERE id = ANY($1::uuid[])", [due]);
    const dueAt = Date.now();
    const [detection, downDetection] = await Promise.all([
      expectFiring(prometheus, 'due work with no engine', notClaimed, dueAt, 60_000),
      expectFiring(prometheus, 'due work with no engine', down, dueAt, 60_000),
    ]);
    // Only the API reports it: no engine's series is left to.
    const lag = await prometheus.query('mail_attempt_schedule_due_lag_ms > 300000');
    expect(lag.map((sample) => sample.labels.instance)).toEqual(['api-1']);
    engine = await startMainEngine(enginePort);
    const restartedAt = Date.now();
    for (const id of due) await waitForStatus(bench.pool, id, 'sent', 30_000);
    await Promise.all([
      expectResolved(prometheus, detection, notClaimed, restartedAt, 60_000),
      expectResolved(prometheus, downDetection, down, restartedAt, 60_000),
    ]);
  }, 180_000);

  it('a loop stalled, the watchdog acting: its restart of the loop is a ticket, resolved once no stall is new', async () => {
    const stall: AlertMatch = { alertname: 'PosternLoopStalled', labels: { instance: 'core-watchdog', loop: 'attempt-worker-0' } };
    await expectQuiet(prometheus, stall, 30_000);
    await queueDelivery(watchdogDb.pool, { recipient: unique('watchdog') });
    const stalledAt = await waitFor('the send to hang', () => watchdogStall.firstSendAt, (at) => at !== null, { timeoutMs: 30_000 });
    const detection = await expectFiring(prometheus, 'a loop stalled, watchdog acting', stall, stalledAt as number, 60_000);
    // Not before the watchdog's threshold has passed: it is the restart that fires.
    expect(detection.detectMs).toBeGreaterThan(10_000);
    // Once restarted the loop is well (the stuck send is left hanging, the fresh worker is free) and
    // nothing stalls again: the alert resolves when its (shortened) window no longer holds the
    // restart. Resolved is timed from when it was seen firing.
    const firingSeenAt = Date.now();
    const stalls = () => prometheus.query('mail_loop_stalls_total{instance="core-watchdog",loop="attempt-worker-0"}');
    expect((await stalls()).map((sample) => sample.value)).toEqual([1]);
    await expectResolved(prometheus, detection, stall, firingSeenAt, 90_000);
    // Restarted once: the fresh worker did not stall again.
    expect((await stalls()).map((sample) => sample.value)).toEqual([1]);
    watchdogStall.release();
  }, 240_000);

  it('the default relay refusing sessions: backed off, paged, and resolved once a probe gets a session; its mail then goes out', async () => {
    const relayKey = `${relayProxy.host}:${relayProxy.port}`;
    const backedOff: AlertMatch = { alertname: 'PosternDefaultRelayBackedOff', labels: { relay: relayKey } };
    await expectQuiet(prometheus, backedOff, 30_000);
    // The alert's input exists before any fault: the relay engine's default relay, at 0 (stub engines have none).
    const scraped = await waitFor(
      'the default relay scraped',
      async () => (await prometheus.query('mail_relay_backed_off{use="default"}')).map((sample) => [sample.labels.instance, sample.labels.relay, sample.value]),
      (samples) => samples.length > 0,
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    expect(scraped).toEqual([['core-relay', relayKey, 0]]);
    // The relay goes away (every connection reset, the pooled sessions cut) while mail is due for it:
    // the wave of sends fails, then the probe, and the relay is backed off.
    const cutAt = Date.now();
    relayProxy.refuse(true);
    relayProxy.cutConnections();
    const recipients = [1, 2, 3].map((n) => unique(`relay-${n}`));
    const due = await Promise.all(recipients.map((recipient) => queueDelivery(relayDb.pool, { recipient })));
    const detection = await expectFiring(prometheus, 'the default relay refusing sessions', backedOff, cutAt, 60_000);
    // Not before the rule's (shortened) `for:` of 10 s has passed since the relay went away.
    expect(detection.detectMs).toBeGreaterThan(10_000);
    const [alert] = (await prometheus.alerts()).filter((a) => a.labels.alertname === 'PosternDefaultRelayBackedOff');
    expect(alert?.annotations.summary).toContain(`The default relay ${relayKey} (MAIL_SMTP_ADDR)`);
    // Nothing went out meanwhile, and nothing was given up: the mail waits for the relay.
    expect(relaySink.accepted.size).toBe(0);
    const { rows } = await relayDb.pool.query<{ status: string }>('SELECT status FROM mail.deliveries WHERE id = ANY($1::uuid[])', [due]);
    expect(rows.filter((row) => !['queued', 'retrying', 'sending'].includes(row.status))).toEqual([]);
    // The relay answers again: the next probe (at the end of the current backoff) gets a session.
    relayProxy.refuse(false);
    const restoredAt = Date.now();
    for (const id of due) await waitForStatus(relayDb.pool, id, 'sent', 120_000);
    await expectResolved(prometheus, detection, backedOff, restoredAt, 60_000);
    // Each message reached the relay once.
    for (const recipient of recipients) expect(relaySink.accepted.get(recipient)).toBe(1);
  }, 240_000);

  it('a routed relay refusing sessions: backed off, a ticket after its (shortened) 30 minutes, resolved once a probe gets a session', async () => {
    const relayKey = `${routeProxy.host}:${routeProxy.port}`;
    const backedOff: AlertMatch = { alertname: 'PosternRoutedRelayBackedOff', labels: { relay: relayKey } };
    await expectQuiet(prometheus, backedOff, 30_000);
    // The route's relay refuses every connection from the start; mail comes due for its domain.
    routeProxy.refuse(true);
    await setRoute(relayDb.pool, { domain: ROUTED_DOMAIN, relay: relayKey, tls: 'opportunistic' });
    const faultAt = Date.now();
    const recipients = [1, 2, 3].map((n) => `${unique(`routed-${n}`).split('@')[0]}@${ROUTED_DOMAIN}`);
    const due = await Promise.all(recipients.map((recipient) => queueDelivery(relayDb.pool, { recipient })));
    const detection = await expectFiring(prometheus, 'a routed relay refusing sessions', backedOff, faultAt, 120_000);
    // Not before the rule's (shortened) `for:` of 30 s.
    expect(detection.detectMs).toBeGreaterThan(30_000);
    const [alert] = (await prometheus.alerts()).filter((a) => a.labels.alertname === 'PosternRoutedRelayBackedOff');
    expect(alert?.labels.severity).toBe('ticket');
    // Only the route's mail waits; nothing was given up.
    for (const recipient of recipients) expect(relaySink.accepted.get(recipient)).toBeUndefined();
    const { rows } = await relayDb.pool.query<{ status: string }>('SELECT status FROM mail.deliveries WHERE id = ANY($1::uuid[])', [due]);
    expect(rows.filter((row) => !['queued', 'retrying', 'sending'].includes(row.status))).toEqual([]);
    // The relay answers again: the next probe gets a session, the mail goes out, and the alert
    // resolves once the 10 s window (10 minutes shipped) no longer holds a backed-off sample.
    routeProxy.refuse(false);
    const restoredAt = Date.now();
    for (const id of due) await waitForStatus(relayDb.pool, id, 'sent', 120_000);
    await expectResolved(prometheus, detection, backedOff, restoredAt, 90_000);
    for (const recipient of recipients) expect(relaySink.accepted.get(recipient)).toBe(1);
  }, 360_000);

  it('a flood of made-up bearer tokens while PostgreSQL holds the lookups: the 503s are a ticket, the API stays ready', async () => {
    const refused: AlertMatch = { alertname: 'PosternApiTokenLookupsRefused', labels: { instance: 'api-1' } };
    await expectQuiet(prometheus, refused, 30_000);
    // PostgreSQL slow to answer token lookups, for certain however loaded the machine (a lock on the
    // table, as a long migration takes): the one lookup slot (a quarter of the API's pool of 4) stays
    // taken, and every other request is answered 503 after its second of waiting for one.
    const locker = await bench.pool.connect();
    let detection: Detection | undefined;
    let flood: ReturnType<typeof startFlood> | undefined;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE mail.api_tokens IN ACCESS EXCLUSIVE MODE');
      const floodAt = Date.now();
      // A few connections are enough: each is refused once a second, and the rule counts any refusal.
      flood = startFlood(api.http.port, 20);
      await waitFor('a token lookup waiting on the lock', () => lockWaiters(bench.pool, 'postern-api'), (waiting) => waiting >= 1, { timeoutMs: 30_000 });
      detection = await expectFiring(prometheus, 'made-up bearer tokens, lookups held', refused, floodAt, 60_000);
      // Not before the rule's (shortened) `for:` of 10 s.
      expect(detection.detectMs).toBeGreaterThan(10_000);
      // What the rule counts is the 503s. The lookup held past MAIL_POSTGRES_STATEMENT_TIMEOUT (15 s)
      // is cancelled: its request too is a 503 with Retry-After (it was a 500), so the flood got
      // nothing else.
      expect(flood.answers.get(503) ?? 0).toBeGreaterThan(0);
      expect(flood.unexpected).toEqual([]);
      // Turned away, not down: the API's readiness asks PostgreSQL on a connection of its own.
      expect((await prometheus.query('mail_process_ready{instance="api-1"}')).map((sample) => sample.value)).toEqual([1]);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
      await flood?.stop();
    }
    await expectResolved(prometheus, detection, refused, Date.now(), 60_000);
  }, 180_000);

  it('engine loops stalled: the loop that stopped heartbeating is named, and it all resolves once it moves', async () => {
    const heartbeat: AlertMatch = { alertname: 'PosternLoopHeartbeatStale', labels: { instance: 'core-stalled', loop: 'attempt-worker-0' } };
    // The rule's own threshold is 120000 ms of heartbeat age: two real minutes from the stall.
    const stalledAt = stalled.firstSendAt as number;
    const detection = await expectFiring(prometheus, 'engine loops stalled', heartbeat, stalledAt, Math.max(30_000, stalledAt + 240_000 - Date.now()));
    expect(detection.detectMs).toBeGreaterThan(120_000);
    stalled.release();
    const releasedAt = Date.now();
    await Promise.all([
      expectResolved(prometheus, detection, heartbeat, releasedAt, 60_000),
      stalledNotReady
        ? expectResolved(prometheus, stalledNotReady, notReady('core-stalled'), releasedAt, 60_000)
        : expectQuiet(prometheus, notReady('core-stalled'), 60_000),
    ]);
  }, 300_000);
});
