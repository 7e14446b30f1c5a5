// The SMTP edge as a value: startEdge() opens the PostgreSQL pools, the SMTP listener and (unless
// told otherwise) the ops HTTP listener, and returns what it bound and how to stop it. main.ts
// calls it once (in each worker when MAIL_MTA_PROCESSES > 1: cluster/); tests call it as often as
// they like (two edges on one database: stale-alias-table).
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import {
  childLogger,
  createMetricsRegistry,
  createPool,
  createSrs,
  type DatabaseReadinessProbe,
  type ListenAddress,
  type Logger,
  LookupSlots,
  type OpsServer,
  openDatabaseReadinessProbe,
  type PosternConfig,
  type Registry,
  resolveRecipients,
  startOpsServer,
} from '@postern/shared';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { createAcceptBatcher } from './accept/accept-batcher.ts';
import { AcceptLedger } from './accept/accept-ledger.ts';
import { commitAccepts, prepareAccept, UndecidedAcceptError } from './accept/accept-message.ts';
import { inboundAuthStep } from './auth/edge-wiring.ts';
import { warnWithoutCollector } from './data/drained-memory.ts';
import { DataMemoryBudget } from './data/memory-budget.ts';
import { createEdgeMetrics, createTlsCertificateMetrics } from './metrics.ts';
import { LookupBatcher } from './recipients/lookup-batcher.ts';
import { srsRecipients } from './recipients/srs-recipient.ts';
import { ClientConnections } from './smtp/client-connections.ts';
import type { EdgeContext, EdgeLimits } from './smtp/edge-context.ts';
import { GreetingDelay } from './smtp/greeting-delay.ts';
import { onClose, onConnect } from './smtp/on-connect.ts';
import { onData } from './smtp/on-data.ts';
import { onMailFrom } from './smtp/on-mail-from.ts';
import { onRcptTo } from './smtp/on-rcpt-to.ts';
import { ClientRateLimiter } from './smtp/rate-limiter.ts';
import { shuttingDown } from './smtp/replies.ts';
import { SessionTraces } from './smtp/session-trace.ts';
import { assertSmtpServerPatched } from './smtp/smtp-server-patch.ts';
import { loadTlsCredentials, type TlsCredentials } from './smtp/tls-credentials.ts';
import { type TlsReloader, watchTlsCredentials } from './smtp/tls-reloader.ts';

export interface EdgeDeps {
  logger: Logger;
  /** Defaults to a fresh registry with Node's default metrics. */
  registry?: Registry;
  /** Open the ops HTTP listener on config.http.mta (default true). */
  http?: boolean;
  /** Listen with SO_REUSEPORT on a socket of this process's own (a cluster worker of
   *  MAIL_MTA_PROCESSES: every worker binds the same address, the kernel spreads connections).
   *  Default false: the address is this process's alone, a second listener gets EADDRINUSE. */
  reusePort?: boolean;
}

export interface Edge {
  smtp: ListenAddress;
  http: ListenAddress | null;
  registry: Registry;
  /** Stop accepting, let transactions under way finish (up to the shutdown timeout), close. */
  stop(): Promise<void>;
}

/** Messages per accept statement at most: 64 rows of each kind keep the statement's own time small
 *  next to the WAL flush it shares. */
const ACCEPT_BATCH_MAX = 64;
/** Payload bytes per accept statement: a batch is copied into one parameter (accept-message.ts). */
const ACCEPT_BATCH_MAX_BYTES = 4 * 1024 * 1024;

function limitsOf(config: PosternConfig): EdgeLimits {
  const { mta } = config;
  return {
    hostname: mta.hostname ?? os.hostname(),
    maxMessageSize: mta.maxMessageSize,
    maxHeaderSize: mta.maxHeaderSize,
    maxRecipients: mta.maxRecipients,
    lookupTimeoutMs: mta.lookupTimeoutMs,
    dataTimeoutMs: mta.dataTimeoutMs,
    rateLimitPerMinute: mta.rateLimitPerMinute,
    maxClientsPerNetwork: mta.maxClientsPerNetwork,
    maxRcptCommands: mta.maxRcptCommands,
    clientLookupConcurrency: mta.clientLookupConcurrency,
    maxHops: mta.maxHops,
  };
}

function serverOptions(config: PosternConfig, limits: EdgeLimits, tls: TlsCredentials | null): SMTPServerOptions {
  return {
    name: limits.hostname,
    banner: 'Postern',
    // Advertise only what is honoured: SIZE (counted on the bytes), PIPELINING, 8BITMIME (bytes are
    // stored as received), SMTPUTF8, ENHANCEDSTATUSCODES, and STARTTLS only with a certificate.
    // No AUTH (this is an inbound MX, not a submission service), no DSN, no REQUIRETLS.
    size: limits.maxMessageSize,
    hideSize: false,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hideREQUIRETLS: true,
    hideSTARTTLS: tls === null,
    disabledCommands: tls === null ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    authOptional: true,
    ...(tls === null ? {} : { key: tls.key, cert: tls.cert }),
    // A PTR lookup per connection adds latency and a DNS dependency for a header comment only.
    disableReverseLookup: true,
    // The options below come from patches/smtp-server+3.21.6.patch (docs/library-patches.md).
    // Our replies carry their precise enhanced code at the head of their text (replies.ts):
    // smtp-server must not put one of its own in front of it.
    respectEnhancedStatusCodes: true,
    // The reverse-path is stored and relayed as received: an xn-- sender
    // domain decoded to Unicode would need SMTPUTF8 on the relay (RFC 6531 3.2) although the
    // sender never used it. Recipients are normalised to A-labels for the lookup either way.
    keepAddressesAsReceived: true,
    // Errors per session as Postfix counts them (smtpd_soft_error_limit, smtpd_error_sleep_time,
    // smtpd_hard_error_limit): every 4xx/5xx reply counts (a directory harvest is 200 x 550);
    // past the soft limit each command waits, at the hard limit 421 4.7.0 and close; an accepted
    // message starts the count again.
    softErrorLimit: config.mta.softErrorLimit,
    errorSleepTime: config.mta.errorSleepMs,
    hardErrorLimit: config.mta.hardErrorLimit,
    // A client that sends its final dot and shuts down its write side (FIN) still reads: it gets
    // the reply to every command it sent, then the edge closes. Without this Node closed the
    // socket at the FIN while the accept was committing: stored, never answered, sent again.
    allowHalfOpen: true,
    // A pipelined MAIL, RCPT, DATA (RFC 2920) is answered in one socket write instead of three.
    coalesceReplies: true,
    maxClients: config.mta.maxClients,
    socketTimeout: config.mta.idleTimeoutMs,
    // The idle timeout is re-armed by every byte: a client trickling a command line one byte at a
    // time would hold its connection (and a MAIL_MTA_MAX_CLIENTS slot) for ever. The same time is
    // a deadline for the whole line, from its first byte (Postfix's smtpd_per_record_deadline).
    commandLineTimeout: config.mta.idleTimeoutMs,
    // A command line that is not UTF-8 is refused (500 5.5.2, as Postfix), not decoded with U+FFFD
    // in place of its bytes: "MAIL FROM:<a\xffb@x> SMTPUTF8" was taken as a@x's neighbour
    // "a\ufffdb@x", stored and relayed as an address the sender never gave.
    rejectMalformedUtf8: true,
    closeTimeout: config.engine.shutdownTimeoutMs,
    logger: false,
  };
}

export async function startEdge(config: PosternConfig, deps: EdgeDeps): Promise<Edge> {
  assertSmtpServerPatched();
  // First, before anything opens: an unusable certificate is a configuration error.
  const tls = config.mta.tls === null ? null : await loadTlsCredentials(config.mta.tls);
  const logger = childLogger(deps.logger, { component: 'smtp' });
  warnWithoutCollector(logger);
  const limits = limitsOf(config);
  if (!config.srsSecret) logger.warn('MAIL_SRS_SECRET is not set: bounces to SRS addresses are refused as unknown recipients');
  const registry = deps.registry ?? createMetricsRegistry('mta');
  const metrics = createEdgeMetrics(registry);
  metrics.dataMemoryBudget.set(config.mta.dataMemoryBudget);

  // Two pools: lookups get the RCPT deadline as their statement_timeout (and as connect timeout),
  // so a slow or absent server is given up on server-side too, not only by Promise.race; the accept
  // transaction keeps the general limits, a large payload may legitimately take longer.
  const lookupPool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-mta-lookup',
    max: config.postgres.poolMax,
    connectTimeoutMs: Math.min(config.postgres.connectTimeoutMs, config.mta.lookupTimeoutMs),
    statementTimeoutMs: config.mta.lookupTimeoutMs,
    logger,
  });
  // No client-side query timeout on the accept pool: giving up on the statement client-side says
  // nothing about whether it commits (accept-message.ts cancels it server-side instead).
  const acceptPool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-mta-accept',
    max: config.postgres.poolMax,
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    statementTimeoutMs: config.postgres.statementTimeoutMs,
    clientQueryTimeout: false,
    logger,
  });
  // Cancels and settling look-ups for the accept: never queued behind the accepts they are about.
  const controlPool = createPool({
    dsn: config.postgres.dsn,
    applicationName: 'postern-mta-control',
    max: 2,
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    statementTimeoutMs: config.postgres.connectTimeoutMs,
    logger,
  });
  const inboundAuth = inboundAuthStep(config, { hostname: limits.hostname, registry, logger });
  const stopped = new AbortController();
  const ledger = new AcceptLedger({
    windowMs: config.mta.duplicateWindowMs,
    maxEntries: 100_000,
    isUndecided: (error) => error instanceof UndecidedAcceptError,
  });

  const acceptDeps = {
    pool: acceptPool,
    control: controlPool,
    hostname: limits.hostname,
    // The server's own statement_timeout fires first when it can; this is for when it cannot.
    cancelAfterMs: config.postgres.statementTimeoutMs + 1_000,
    retryMs: 1_000,
    logger,
    signal: stopped.signal,
  };
  // Group commit (accept-batcher.ts): two statements in flight, so one batch's WAL flush overlaps
  // the next one's inserts; the rest of the pool stays for the retries of a poison batch.
  const batcher = createAcceptBatcher({
    commit: (batch) => commitAccepts(acceptDeps, batch),
    maxBatch: ACCEPT_BATCH_MAX,
    maxBatchBytes: ACCEPT_BATCH_MAX_BYTES,
    maxInFlight: Math.min(2, config.postgres.poolMax),
    logger,
    signal: stopped.signal,
    onBatch: (size) => metrics.acceptBatchSize.observe(size),
  });

  let stopping = false;
  let smtp: SMTPServer | null = null;
  const findConnection = (session: SMTPServerSession) => {
    for (const connection of smtp?.connections ?? []) if (connection.session === session) return connection;
    return undefined;
  };
  // RCPTs of the same event-loop turn share one lookup statement (recipients/lookup-batcher.ts).
  const lookups = new LookupBatcher((addresses) => resolveRecipients(lookupPool, addresses));
  const context: EdgeContext = {
    limits,
    logger,
    metrics,
    resolve: (address) => lookups.resolve(address),
    srs: config.srsSecret ? srsRecipients(createSrs(config.srsSecret, config.srsPreviousSecret)) : null,
    accept: (fingerprint, message) => ledger.accept(fingerprint, () => batcher.accept(prepareAccept(limits.hostname, message))),
    rateLimiter: new ClientRateLimiter({ perMinute: limits.rateLimitPerMinute }),
    greeting: new GreetingDelay({ delayMs: config.mta.greetingDelayMs }),
    dataMemory: new DataMemoryBudget(config.mta.dataMemoryBudget, (held) => metrics.dataBytesInFlight.set(held)),
    isStopping: () => stopping,
    recipients: new WeakMap(),
    rcptCommands: new WeakMap(),
    lookupSlots: new LookupSlots(config.mta.clientLookupConcurrency),
    connected: new ClientConnections(limits.maxClientsPerNetwork),
    inData: new Set(),
    accepting: new Set(),
    traces: new SessionTraces(),
    closeWithoutReply(session) {
      findConnection(session)?.close();
    },
    replyAndClose(session, code, text) {
      const connection = findConnection(session);
      if (!connection) return;
      connection.send(code, text);
      // send() closes after a 421 by itself; close() is idempotent, and it stops the parser at once.
      connection.close();
    },
    inboundAuth: inboundAuth?.step ?? null,
  };

  smtp = new SMTPServer({
    ...serverOptions(config, limits, tls),
    // From our patch. Unset, smtp-server waits 100 ms before every greeting, which caps 20 sessions
    // at about 200 new connections/s: the wait is MAIL_MTA_GREETING_DELAY, paid once per client.
    greetingDelay: (remoteAddress) => context.greeting.delayFor(remoteAddress),
    onConnect: onConnect(context),
    onMailFrom: onMailFrom(context),
    onRcptTo: onRcptTo(context),
    onData: onData(context),
    onClose: onClose(context),
  });
  const server = smtp;
  server.on('error', (error) => logger.warn({ err: error }, 'SMTP connection error'));
  server.on('errorDelay', () => metrics.errorLimitDelays.inc());
  server.on('earlyTalker', (remoteAddress) => {
    metrics.earlyTalkers.inc();
    logger.debug({ client: remoteAddress }, 'talked before the greeting: 421 and closed');
  });
  server.on('commandLineTimeout', (session) => {
    metrics.commandLineTimeouts.inc();
    logger.info({ session: session.id, client: session.remoteAddress }, 'command line not complete within the idle timeout: 421 and closed');
  });
  server.on('malformedUtf8', (session) => {
    metrics.rejections.inc({ stage: 'command', reason: 'malformed_utf8' });
    logger.info({ session: session.id, client: session.remoteAddress }, 'command line not UTF-8: 500 5.5.2');
  });
  server.on('errorLimit', (session, errors) => {
    metrics.errorLimitDisconnects.inc();
    logger.info({ session: session.id, client: session.remoteAddress, errors }, 'too many errors: 421 and closed');
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    // smtp-server passes these to net.Server.listen. exclusive: a cluster worker binds the socket
    // itself instead of sharing a handle the primary holds (the primary is not in the data path).
    const { host, port } = config.mta.listen;
    server.listen(deps.reusePort ? { host, port, reusePort: true, exclusive: true } : { host, port }, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const bound = server.server.address() as AddressInfo;
  const smtpAddress = { host: bound.address, port: bound.port };
  logger.info({ address: `${smtpAddress.host}:${smtpAddress.port}`, hostname: limits.hostname }, 'SMTP listener open');
  // A renewed certificate is presented without a restart (smtp/tls-reloader.ts).
  const tlsReloader: TlsReloader | null =
    tls === null || config.mta.tls === null
      ? null
      : watchTlsCredentials({
          files: config.mta.tls,
          current: tls,
          intervalMs: config.mta.tls.reloadIntervalMs,
          apply: (renewed) => server.updateSecureContext({ key: renewed.key, cert: renewed.cert }),
          logger,
          metrics: createTlsCertificateMetrics(registry),
        });

  let ops: OpsServer | null = null;
  let readinessProbe: DatabaseReadinessProbe | null = null;
  if (deps.http !== false) {
    // Its own connection: RCPT lookups queued on the lookup pool (a harvest) are load, not an outage.
    const probe = openDatabaseReadinessProbe({
      dsn: config.postgres.dsn,
      applicationName: 'postern-mta-readiness',
      connectTimeoutMs: config.postgres.connectTimeoutMs,
      logger,
    });
    readinessProbe = probe;
    ops = await startOpsServer({
      addr: config.http.mta,
      maxConnections: config.http.maxConnections,
      logger: deps.logger,
      registry,
      readiness: {
        postgres: probe.check,
        smtp: async () => {
          if (stopping || !server.server.listening) throw new Error('SMTP listener closed');
        },
      },
    });
  }

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    tlsReloader?.stop();
    logger.info({ connections: server.connections.size }, 'stopping: no new connections or transactions');
    const listenerClosed = new Promise<void>((resolve) => server.server.close(() => resolve()));
    // Sessions between transactions are told to come back later; a transaction under way (after
    // MAIL FROM, or inside DATA) may finish, its next MAIL FROM gets the same 421. A session whose
    // accept statement is out is never told 421: its reply is the statement's outcome. At the
    // deadline the others get the 421; an accept still undecided then (PostgreSQL not answering)
    // is abandoned and its session closed WITHOUT a reply (docs/mta.md, Shutdown).
    const deadline = Date.now() + config.engine.shutdownTimeoutMs;
    const reply = shuttingDown();
    for (;;) {
      const late = Date.now() >= deadline;
      for (const connection of server.connections) {
        const { session } = connection;
        if (context.accepting.has(session.id)) continue;
        // A connection not greeted yet (MAIL_MTA_GREETING_DELAY, smtp-server's early-talker wait) has no envelope yet.
        const inTransaction = Boolean(session.envelope?.mailFrom) || context.inData.has(session.id);
        if (!inTransaction || late) connection.send(reply.responseCode, reply.message);
      }
      if (server.connections.size === 0 || late) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    stopped.abort();
    // Let the abandoned accepts close their sessions (their own promise chains), then close the rest.
    await new Promise((resolve) => setImmediate(resolve));
    for (const connection of server.connections) connection.close();
    await listenerClosed;
    inboundAuth?.resolver.cancel();
    await ops?.close();
    // A pool ends when its queries have; with PostgreSQL hung that is up to a client timeout
    // later, so past the deadline the edge does not wait for it (the process exits anyway).
    const poolsClosed = Promise.allSettled([lookupPool.end(), acceptPool.end(), controlPool.end(), readinessProbe?.end()]);
    await (Date.now() >= deadline ? Promise.race([poolsClosed, new Promise((resolve) => setTimeout(resolve, 500))]) : poolsClosed);
    logger.info('stopped');
  };

  return { smtp: smtpAddress, http: ops?.address ?? null, registry, stop };
}
