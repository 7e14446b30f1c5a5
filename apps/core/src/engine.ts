// The delivery engine as a value: startEngine() opens the pool, checks the template catalog, pings
// Redis (if configured), opens the internal HTTP listener and starts every loop under its
// supervisor. main.ts calls it once; tests call it as often as they like (two engines sharing one
// queue, one killed mid-batch). The value it returns carries the engine's events (engine-events.ts:
// what it does, for metrics, the benchmark and tests) and its maintenance (lease reclaim and
// retention, one pass on demand). Boot order is the runbook's (no-health-endpoints, docs/incidents.md): migrations (main.ts, or
// options.migrate) -> DKIM keys open with MAIL_SECRETS_KEY (or _PREVIOUS) -> template catalog -> Redis ping -> HTTP listener -> loops.
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import {
  checkSecretsAtStart,
  childLogger,
  createDeliveryLifecycle,
  createMailResolver,
  createMetricsRegistry,
  createPool,
  createRedisConnections,
  createSrs,
  type DatabaseReadinessProbe,
  describeRouteRelay,
  exportQueueGauges,
  type ListenAddress,
  type Logger,
  loadSigningKey,
  loadTemplateCatalog,
  lookupRoute,
  type MailResolver,
  type OpsServer,
  openDatabaseReadinessProbe,
  openRoutePassword,
  type Pool,
  type PosternConfig,
  prepareDatabase,
  type RedisConnections,
  type Registry,
  type ScheduleSampler,
  startOpsServer,
  type TemplateCatalog,
  unopenableRouteCredentials,
} from '@postern/shared';
import { createArcSealer } from './delivery/arc-seal.ts';
import { DSN_TEMPLATE_ID } from './delivery/bounce.ts';
import { defaultReplyRules, relayVerdictOf } from './delivery/classify-reply.ts';
import { createKeyReader, createMessageSigner } from './delivery/dkim-signer.ts';
import { lostLeaseEnding } from './delivery/fail-for-good.ts';
import { createForwarder, type Forwarder } from './delivery/forward-message.ts';
import { createPayloadHolds, registerPayloadGauges } from './delivery/payload-holds.ts';
import { retryLadder } from './delivery/retry-ladder.ts';
import { type KeyLookup, SigningKeyCache } from './delivery/signing-key-cache.ts';
import { EngineEvents } from './engine-events.ts';
import { internalRoutes } from './http/internal-routes.ts';
import { COMMAND_STREAM, createStreamConsumer } from './intake/consume-stream.ts';
import { exportRedisRoomGauges } from './intake/redis-room-gauges.ts';
import { checkRedisSettings } from './intake/redis-settings.ts';
import { createMaintenance, type Maintenance } from './keepalive/maintenance.ts';
import { startLoops } from './loops.ts';
import { countEngineEvents, createEngineMetrics } from './metrics.ts';
import { createCompletionBatcher } from './queue/completion-batcher.ts';
import { listenForDueDeliveries } from './queue/due-listener.ts';
import { LiveLeases } from './queue/live-leases.ts';
import { createScheduler } from './queue/scheduler.ts';
import { WorkChannel } from './queue/work-channel.ts';
import { createMtaSts, createMtaStsMetrics, createPgMtaStsStore } from './relay/mta-sts.ts';
import { createMxRelay } from './relay/mx-relay.ts';
import type { Relay } from './relay/relay.ts';
import { registerRelayGauges } from './relay/relay-gauges.ts';
import { createRelayHealth, type RelayUse } from './relay/relay-health.ts';
import { createRouteTable } from './relay/route-table.ts';
import { createRoutedRelay } from './relay/routed-relay.ts';
import { exportSiteBackoffGauges, SITE_BACKOFF_STALE_MS } from './relay/site-backoff-gauges.ts';
import { createSiteMetrics } from './relay/site-metrics.ts';
import { loadSiteRules, SITES_FILE } from './relay/site-rules.ts';
import { createSiteShaping } from './relay/site-shaping.ts';
import { createSiteStore } from './relay/site-store.ts';
import { createSmtpRelay } from './relay/smtp-relay.ts';
import { createStubRelay } from './relay/stub-relay.ts';
import { traceClaims } from './tracing/claim-spans.ts';

export interface EngineDeps {
  logger: Logger;
  registry?: Registry;
  /** Defaults to loading config.templateDir. */
  catalog?: TemplateCatalog;
  /** Open the internal HTTP listener (default true). */
  http?: boolean;
  /** Apply migrations first (main.ts does; tests use migrated databases). */
  migrate?: boolean;
  /** Replace the relay (tests); defaults to SMTP or stub per config.smtp.mode. */
  relay?: Relay;
  /** How long a domain's route is reused (default relay/route-table.ts's ROUTE_CACHE_MS); 0: the
   *  table is read on every send (tests that change a route and send at once). */
  routeCacheMs?: number;
  /** Where the engine reports what it does; pass one to subscribe before the first claim
   *  (the benchmark). Defaults to a new one, as engine.events. */
  events?: EngineEvents;
  /** Run lease reclaim and retention on their timers (default true). false: they run only when
   *  asked through engine.maintenance (tests that trigger a pass instead of waiting for one). */
  maintenanceLoops?: boolean;
}

/** How long an outcome waits for others to share its commit: short next to one WAL flush. */
const COMPLETION_FLUSH_DELAY_MS = 2;

export interface Engine {
  workerId: string;
  http: ListenAddress | null;
  registry: Registry;
  pool: Pool;
  events: EngineEvents;
  /** One pass of lease reclaim or retention now, returning what it did. */
  maintenance: Maintenance;
  /** Stop claiming, finish or release in-flight work within MAIL_SHUTDOWN_TIMEOUT, close. */
  stop(): Promise<void>;
}

/** SRS and ARC for forwarded mail (docs/core.md, "Forwarded mail: SRS and ARC"). */
function forwarderFor(config: PosternConfig, keyFor: KeyLookup, resolver: MailResolver, log: Logger): Forwarder {
  if (!config.srsSecret) {
    log.warn('MAIL_SRS_SECRET is not set: forwarded mail keeps its original envelope sender (SPF fails at receivers that check it)');
  }
  // Only the keys of an existing ARC chain's sealers are looked up, through the one mail resolver.
  return createForwarder({
    srs: config.srsSecret ? createSrs(config.srsSecret, config.srsPreviousSecret) : null,
    sealer: createArcSealer({
      authservId: config.mta.hostname ?? os.hostname(),
      resolver: (name) => resolver.resolve(name, 'TXT'),
    }),
    keyFor: createKeyReader(keyFor),
  });
}

/** The outbound relay MAIL_SMTP_MODE asks for; in smtp and mx mode behind the route table
 *  (relay/routed-relay.ts), which sends a routed domain's mail elsewhere. Direct delivery is shaped
 *  per destination site, with the limits shared through `shared.pool`; each relay host (MAIL_SMTP_ADDR's
 *  and routed ones) is backed off by this engine when its sessions cannot be set up (relay/relay-health.ts). */
function createRelay(
  config: PosternConfig,
  log: Logger,
  shared: { pool: Pool; registry: Registry; workerId: string; resolver: MailResolver },
  routeCacheMs: number | undefined,
): Relay {
  const { pool, registry, resolver } = shared;
  const { smtp } = config;
  // smtp mode sends through MAIL_SMTP_ADDR; mx mode has no default relay, it delivers directly.
  const addr = smtp.mode === 'smtp' ? smtp.addr : undefined;
  if (smtp.mode === 'stub' || (smtp.mode === 'smtp' && !addr)) return createStubRelay();
  // One set of per-site metrics for direct delivery and the relay hosts (their counters are registered once).
  const siteMetrics = createSiteMetrics(registry);
  const replyRules = defaultReplyRules();
  const relayHealth = createRelayHealth({
    backoffMs: config.shaping.backoffMs,
    deferMs: config.shaping.deferMs,
    // A refusal of the engine itself (relaying denied, throttled) is the relay's state, not the recipient's.
    verdictOf: (failure) => relayVerdictOf(replyRules, failure),
    metrics: siteMetrics,
    logger: log,
  });
  registerRelayGauges(registry, relayHealth);
  const direct = () => {
    log.info({ dnsServers: resolver.servers, port: smtp.mxPort, privateAddresses: smtp.mxPrivateAddresses }, 'direct delivery to MX hosts');
    // A sites file that does not parse refuses the start, naming its line.
    const rules = loadSiteRules(config.shaping.sitesFile);
    const { shaping } = config;
    log.info({ sitesFile: config.shaping.sitesFile ?? SITES_FILE, rules: rules.length, maxConnections: shaping.maxConnections }, 'shaping per destination site');
    return createMxRelay({
      shaping: createSiteShaping({
        store: createSiteStore(shared.pool),
        resolver,
        rules,
        defaults: { maxConnections: shaping.maxConnections, messagesPerConnection: shaping.messagesPerConnection, ratePerSecond: shaping.ratePerSecond },
        idleTimeoutMs: shaping.idleTimeoutMs,
        deferMs: shaping.deferMs,
        backoffMs: shaping.backoffMs,
        timeoutMs: smtp.timeoutMs,
        engineId: shared.workerId,
        metrics: siteMetrics,
        logger: log,
      }),
      resolver,
      port: smtp.mxPort,
      privateAddresses: smtp.mxPrivateAddresses,
      localName: config.mta.hostname ?? os.hostname(),
      timeoutMs: smtp.timeoutMs,
      sendDeadlineMs: smtp.sendDeadlineMs,
      logger: log,
      mtaSts: createMtaSts({
        resolver,
        store: createPgMtaStsStore(pool),
        port: smtp.mtaStsPort,
        // RFC 8461 3.3 suggests a minute at most; a send waits for it, so no longer than a reply.
        timeoutMs: Math.min(smtp.timeoutMs, 60_000),
        privateAddresses: smtp.mxPrivateAddresses,
        logger: log,
        metrics: createMtaStsMetrics(registry),
      }),
    });
  };
  // Pools to one host:port with one TLS requirement and one set of credentials share their health
  // (a certificate that does not verify, or a password refused, says nothing of the host's other uses).
  const relayTo = (host: string, port: number, credentials: { username?: string; password?: string }, use: RelayUse, tls?: 'opportunistic' | 'required') => {
    const site = describeRouteRelay({ kind: 'host', host, port });
    const secret = credentials.password ? createHash('sha256').update(credentials.password).digest('base64url').slice(0, 16) : '';
    return relayHealth.guard(
      site,
      createSmtpRelay({
        host,
        port,
        username: credentials.username,
        password: credentials.password,
        timeoutMs: smtp.timeoutMs,
        sendDeadlineMs: smtp.sendDeadlineMs,
        maxConnections: config.engine.attemptWorkerConcurrency,
        localName: config.mta.hostname ?? os.hostname(),
        ...(tls ? { tls } : {}),
        logger: log,
      }),
      `${site} ${tls ?? 'default'} ${credentials.username ?? ''} ${secret}`,
      use,
    );
  };
  const fallback = addr ? relayTo(addr.host, addr.port, { username: smtp.username, password: smtp.password }, 'default') : direct();
  return createRoutedRelay({
    fallback,
    fallbackChoice: addr ? { relay: fallback.name.replace(/^smtp:\/\//, ''), tls: null } : { relay: 'mx', tls: 'opportunistic' },
    direct: () => (addr ? direct() : fallback),
    relayTo: (host, port, tls, auth) => relayTo(host, port, auth ? { username: auth.username, password: auth.password } : {}, 'route', tls),
    openPassword: (routeDomain, auth) => openRoutePassword(config.secretsKey, routeDomain, auth),
    routes: createRouteTable({ load: (domain) => lookupRoute(pool, domain), ...(routeCacheMs !== undefined ? { maxAgeMs: routeCacheMs } : {}) }),
    logger: log,
  });
}

/** One DNS lookup, both tries: within one reply's wait (MAIL_SMTP_TIMEOUT), at most 10 s. */
function dnsTimeoutMs(smtpTimeoutMs: number): number {
  return Math.min(smtpTimeoutMs, 10_000);
}

async function waitForRedis(redis: RedisConnections, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await redis.commands.ping();
      return;
    } catch (error) {
      if (Date.now() >= deadline) {
        // Why the connection could not be made (a certificate, a login) is the cause worth naming.
        const cause = redis.connectionError() ?? (error as Error);
        throw new Error(`Redis did not answer PING within ${timeoutMs} ms: ${cause.message}`, { cause });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export async function startEngine(config: PosternConfig, deps: EngineDeps): Promise<Engine> {
  const logger = deps.logger;
  const workerId = `core:${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const log = childLogger(logger, { workerId });
  const concurrency = config.engine.attemptWorkerConcurrency;
  const pool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-core',
    // Every worker may hold a connection while recording, plus the LISTEN session, the scheduler,
    // the heartbeat and the stream consumer's commands in flight.
    max: Math.max(config.postgres.poolMax, concurrency + 3 + (config.redis ? config.engine.streamConcurrency : 1)),
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    statementTimeoutMs: config.postgres.statementTimeoutMs,
    logger: log,
  });
  let redis: RedisConnections | null = null;
  let relay: Relay | null = null;
  let ops: OpsServer | null = null;
  let readinessProbe: DatabaseReadinessProbe | null = null;
  /** The background samplers of /metrics (the queue's, the site backoffs'): stopped with the engine. */
  const samplers: Array<Pick<ScheduleSampler, 'stop'>> = [];
  try {
    if (deps.migrate) await prepareDatabase({ dsn: config.postgres.dsn, logger: log });
    // A DKIM key this engine could not open would hold back its domain's mail: refuse to start.
    await checkSecretsAtStart(pool, config.secretsKey, log);
    // A route's credentials this engine cannot open hold back only that route's mail (deferred at
    // send time): said loudly at the start, not a refusal to start.
    if (config.smtp.mode !== 'stub') {
      const unopenable = await unopenableRouteCredentials(pool, config.secretsKey);
      if (unopenable.length > 0) {
        log.error({ routes: unopenable }, "routes' credentials cannot be opened (each route says why): their deliveries are deferred until a key this engine is given opens them");
      }
    }
    const catalog = deps.catalog ?? loadTemplateCatalog(config.templateDir);
    if (!catalog.templates.has(DSN_TEMPLATE_ID)) {
      throw new Error(`template catalog ${catalog.dir} has no "${DSN_TEMPLATE_ID}" template, which bounces are written with`);
    }
    log.info({ dir: catalog.dir, templates: [...catalog.templates.keys()] }, 'template catalog parsed');
    if (config.redis) {
      redis = createRedisConnections({ ...config.redis, name: workerId, logger: log });
      await waitForRedis(redis, config.postgres.connectTimeoutMs);
      await checkRedisSettings(redis.commands, log, { behindSentinel: config.redis.endpoint.kind === 'sentinel' });
    } else {
      log.warn('MAIL_REDIS_MASTER_ADDR is not set: stream intake is off');
    }
    const registry = deps.registry ?? createMetricsRegistry('core');
    // One mail resolver (and so one DNS cache) for the MX routes, MTA-STS, site keys and ARC chains.
    const resolver = createMailResolver({ servers: config.dns.servers, timeoutMs: dnsTimeoutMs(config.smtp.timeoutMs) });
    relay = deps.relay ?? createRelay(config, log, { pool, registry, workerId, resolver }, deps.routeCacheMs);
    log.info({ relay: relay.name, mode: config.smtp.mode }, 'outbound relay');

    const loopsRef: { current: ReturnType<typeof startLoops> | null } = { current: null };
    const schedule = exportQueueGauges({ registry, db: pool, intervalMs: config.engine.heartbeatIntervalMs, logger: log });
    samplers.push(schedule);
    if (config.smtp.mode !== 'stub') {
      // Direct delivery's site backoffs (mx mode, and routes to "mx"), shared by every engine. A
      // backoff whose end passed longer ago than a probe and the claim of a due delivery take (the
      // send deadline, a few deferrals; at least 15 minutes) with nothing tried since is stale.
      const staleAfterMs = Math.max(SITE_BACKOFF_STALE_MS, config.smtp.sendDeadlineMs + 4 * config.shaping.deferMs);
      samplers.push(exportSiteBackoffGauges({ registry, db: pool, intervalMs: config.engine.heartbeatIntervalMs, staleAfterMs, logger: log }));
    }
    if (redis) samplers.push(exportRedisRoomGauges({ registry, redis: redis.commands, stream: COMMAND_STREAM, intervalMs: config.engine.heartbeatIntervalMs, logger: log }));
    const metrics = createEngineMetrics(registry, { loops: () => loopsRef.current?.loops ?? [] });
    const events = deps.events ?? new EngineEvents(log);
    countEngineEvents(events, metrics);
    const ladder = retryLadder(config.engine.retryLadderMs);
    // Bounces are written by the attempt workers (a permanent failure, a spent ladder) and by the
    // lease reclaim (a lease that ran out with the ladder spent), with the same catalog and names.
    const bounces = { catalog, reportingMta: os.hostname(), sender: config.smtp.from };
    // Every status change the engine makes goes through this one seam.
    const lifecycle = createDeliveryLifecycle(pool);
    const payloads = createPayloadHolds({ load: (messageId, read) => lifecycle.loadPayload(messageId, read), budgetBytes: config.engine.payloadMemoryBudgetBytes });
    registerPayloadGauges(registry, payloads);
    const channel = new WorkChannel();
    const leases = new LiveLeases();
    const completions = createCompletionBatcher({
      lifecycle,
      workerId,
      // Every worker waiting on the same batch: nobody else can add to it, write it now.
      maxBatch: concurrency,
      flushDelayMs: COMPLETION_FLUSH_DELAY_MS,
      logger: log,
      events,
    });
    // DKIM keys (signing, and ARC sealing of forwarded mail): read once per domain and kept until a
    // claim shows mail.dkim_keys changed (signing-key-cache.ts).
    const signingKeys = new SigningKeyCache();
    const signingKeyFor = signingKeys.cached((domain) => loadSigningKey(pool, config.secretsKey, domain));
    const scheduler = createScheduler({
      claim: async (wanted) => {
        const startedAt = Date.now();
        const claimed = await lifecycle.claim(workerId, wanted, config.engine.leaseDurationMs);
        if (claimed[0]) signingKeys.observe(claimed[0].dkim_keys_generation);
        // Live from the moment it is claimed: renewed, and never taken back by this engine's reclaim.
        for (const delivery of claimed) leases.hold({ id: delivery.id, attemptNumber: delivery.attempt_count });
        return claimed.length === 0 ? claimed : traceClaims(claimed, { startedAt, endedAt: Date.now(), workerId });
      },
      listen: (wake) => listenForDueDeliveries({ pool, wake, events }),
      channel,
      completions,
      sizing: { concurrency, batchSize: config.engine.claimBatchSize, claimAhead: config.engine.claimAhead },
      pollIntervalMs: config.engine.pollIntervalMs,
      heartbeatIntervalMs: config.engine.heartbeatIntervalMs,
      events,
    });
    const maintenance = createMaintenance({
      pool,
      engine: config.engine,
      maxAttempts: ladder.maxAttempts,
      lifecycle,
      endLostLease: lostLeaseEnding({ ...bounces, logger: childLogger(log, { component: 'lease-reclaim' }) }),
      leases,
      metrics,
      events,
      logger: log,
    });
    const consumer = redis
      ? createStreamConsumer({
          redis,
          pool,
          catalog,
          group: config.redis?.consumerGroup ?? 'postern-core',
          consumer: workerId,
          sender: config.smtp.from,
          urgentCategories: config.urgentCategories,
          reclaimIdleMs: config.engine.streamReclaimIdleMs,
          blockMs: Math.min(2_000, config.engine.heartbeatIntervalMs),
          batchSize: 50,
          concurrency: config.engine.streamConcurrency,
          metrics,
          logger: log,
        })
      : null;


    if (deps.http !== false) {
      const redisConnections = redis;
      // Its own connection: workers, samplers and internal routes queued on the pool are load,
      // not a database out of reach (packages/shared/src/db/readiness-probe.ts).
      const probe = openDatabaseReadinessProbe({
        dsn: config.postgres.dsn,
        applicationName: 'postern-core-readiness',
        connectTimeoutMs: config.postgres.connectTimeoutMs,
        logger: log,
      });
      readinessProbe = probe;
      ops = await startOpsServer({
        addr: config.http.internal,
        maxConnections: config.http.maxConnections,
        logger: log,
        registry,
        handle: internalRoutes(pool, config.http.internalApiClients),
        readiness: {
          postgres: probe.check,
          ...(redisConnections ? { redis: async () => void (await redisConnections.commands.ping()) } : {}),
          loops: async () => {
            const stale = loopsRef.current?.staleLoops() ?? ['(loops not started yet)'];
            if (stale.length > 0) throw new Error(`stale or restarting: ${stale.join(', ')}`);
          },
        },
      });
    }
    const running = startLoops({
      config,
      pool,
      lifecycle,
      channel,
      scheduler,
      consumer,
      maintenance: deps.maintenanceLoops === false ? null : maintenance.loops,
      attempt: {
        payloads,
        completions,
        relay,
        signer: createMessageSigner(signingKeyFor),
        forwarder: forwarderFor(config, signingKeyFor, resolver, log),
        ...bounces,
        ladder,
        queueLifetimeMs: config.engine.queueLifetimeMs,
        rules: defaultReplyRules(),
        workerId,
        mode: config.smtp.mode,
        metrics,
        logger: childLogger(log, { component: 'attempt' }),
      },
      leases,
      workerId,
      events,
      logger: log,
    });
    loopsRef.current = running;
    log.info({ concurrency, ladder: ladder.waitsMs, leaseMs: config.engine.leaseDurationMs }, 'engine running');

    let stopped: Promise<void> | null = null;
    const openRelay = relay;
    const openRedis = redis;
    const openOps = ops;
    const openProbe = readinessProbe;
    return {
      workerId,
      http: ops?.address ?? null,
      registry,
      pool,
      events,
      maintenance: { reclaimExpiredLeases: maintenance.reclaimExpiredLeases, applyRetention: maintenance.applyRetention },
      stop() {
        stopped ??= (async () => {
          log.info('stopping: no new claims or stream reads');
          await running.stop(config.engine.shutdownTimeoutMs, openRelay);
          for (const sampler of samplers) sampler.stop();
          await openOps?.close();
          await openRelay.close();
          await openRedis?.close();
          await openProbe?.end().catch(() => {});
          await pool.end().catch(() => {});
          log.info('engine stopped');
        })();
        return stopped;
      },
    };
  } catch (error) {
    for (const sampler of samplers) sampler.stop();
    await ops?.close();
    await relay?.close();
    await redis?.close();
    await readinessProbe?.end().catch(() => {});
    await pool.end().catch(() => {});
    throw error;
  }
}
