// Parse the environment once, at boot, into a typed object. Nothing reads process.env after this.
import { ConfigError } from '../errors/config-error.ts';
import { type SecretsKey, secretsKeyOf } from '../secrets/secrets-key.ts';
import { type Env, envSchema } from './env-schema.ts';
import type { ListenAddress, RedisEndpoint } from './parse-values.ts';

export type AppName = 'mta' | 'core' | 'api' | 'tools';

export interface PosternConfig {
  env: Env['MAIL_ENV'];
  logLevel: Env['MAIL_LOG_LEVEL'];
  logFormat: Env['MAIL_LOG_FORMAT'];
  postgres: {
    dsn: string;
    poolMax: number;
    connectTimeoutMs: number;
    statementTimeoutMs: number;
  };
  redis: {
    endpoint: RedisEndpoint;
    /** The ACL user; unset: Redis's `default` user. */
    username: string | undefined;
    password: string | undefined;
    sentinelPassword: string | undefined;
    /** A PEM file of the CAs a rediss:// server's certificate must chain to; unset: Node's own (with NODE_EXTRA_CA_CERTS). */
    tlsCaFile: string | undefined;
    consumerGroup: string;
  } | null;
  templateDir: string;
  /** MAIL_URGENT_CATEGORIES: deliveries of these categories are claimed first. */
  urgentCategories: readonly string[];
  smtp: {
    mode: Env['MAIL_SMTP_MODE'];
    addr: ListenAddress | undefined;
    username: string | undefined;
    password: string | undefined;
    from: string;
    /** Per command: connecting, the greeting, every reply. */
    timeoutMs: number;
    /** A whole send, first byte to last reply (MAIL_SMTP_SEND_DEADLINE or SMTP_SEND_STEPS x timeoutMs). */
    sendDeadlineMs: number;
    /** Port of the MX hosts in mx mode. */
    mxPort: number;
    /** MX hosts at private-scope addresses in mx mode: refused (the default) or allowed. */
    mxPrivateAddresses: 'refuse' | 'allow';
    /** HTTPS port of MTA-STS policy hosts in mx mode (443; another only for tests). */
    mtaStsPort: number;
  };
  /** MAIL_SECRETS_KEY: seals DKIM private keys; null when unset (then no DKIM key may exist). */
  secretsKey: SecretsKey | null;
  /** MAIL_SRS_SECRET: null when unset (forwarded mail keeps its envelope sender, SRS addresses are unknown). */
  srsSecret: string | null;
  /** MAIL_SRS_SECRET_PREVIOUS: the secret before a change, still accepted in bounces; null when unset. */
  srsPreviousSecret: string | null;
  /** The mail resolver's servers; null: the system's. */
  dns: { servers: string[] | null };
  /** Shaping per destination site in mx mode (apps/core/src/relay/site-*.ts). */
  shaping: {
    maxConnections: number;
    messagesPerConnection: number;
    /** Messages per second per site; null: no limit. */
    ratePerSecond: number | null;
    idleTimeoutMs: number;
    deferMs: number;
    backoffMs: number;
    /** null: the file shipped with the engine. */
    sitesFile: string | null;
  };
  engine: {
    attemptWorkerConcurrency: number;
    /** MAIL_PAYLOAD_MEMORY_BUDGET: bytes of relayed messages held for attempts at once. */
    payloadMemoryBudgetBytes: number;
    shutdownTimeoutMs: number;
    /** Waits between attempts; null means the built-in ladder (apps/core retry-ladder.ts). */
    retryLadderMs: number[] | null;
    leaseDurationMs: number;
    /** MAIL_QUEUE_LIFETIME: a delivery that would wait again after this long in the queue ends as a dead letter. */
    queueLifetimeMs: number;
    claimBatchSize: number;
    /** Most deliveries claimed for workers only waiting for a commit (0: only for free workers). */
    claimAhead: number;
    pollIntervalMs: number;
    heartbeatIntervalMs: number;
    watchdogStallThresholdMs: number;
    streamReclaimIdleMs: number;
    /** Stream commands accepted at once by one engine (MAIL_STREAM_CONCURRENCY). */
    streamConcurrency: number;
    retentionAgeMs: number;
    retentionIntervalMs: number;
    /** Idempotency reservations older than this are purged. */
    idempotencyWindowMs: number;
  };
  http: {
    internal: ListenAddress;
    /** MAIL_INTERNAL_API_CLIENTS: who may read /api/v1/internal (no token): the engine's host only, or anyone. */
    internalApiClients: 'loopback' | 'any';
    mta: ListenAddress;
    api: ListenAddress;
    /** Connections open at once on each of them (MAIL_HTTP_MAX_CONNECTIONS). */
    maxConnections: number;
  };
  mta: {
    listen: ListenAddress;
    hostname: string | undefined;
    maxMessageSize: number;
    /** Bytes of the header section a message may have (MAIL_MTA_MAX_HEADER_SIZE). */
    maxHeaderSize: number;
    /** Bytes of DATA held in memory across all messages in flight in one edge. */
    dataMemoryBudget: number;
    maxRecipients: number;
    lookupTimeoutMs: number;
    maxClients: number;
    /** Open sessions of one client network (IPv4 address, IPv6 /64) at most, per edge process. */
    maxClientsPerNetwork: number;
    /** Edge processes (MAIL_MTA_PROCESSES, "auto" resolved): 1 is one process, more a primary and
     *  this many workers, each with every per-process limit below. */
    processes: number;
    /** Wait before the greeting to catch early talkers; 0: greet at once. */
    greetingDelayMs: number;
    idleTimeoutMs: number;
    dataTimeoutMs: number;
    rateLimitPerMinute: number;
    maxRcptCommands: number;
    softErrorLimit: number;
    errorSleepMs: number;
    hardErrorLimit: number;
    clientLookupConcurrency: number;
    maxHops: number;
    duplicateWindowMs: number;
    tls: { certFile: string; keyFile: string; reloadIntervalMs: number } | null;
    /** SPF, DKIM, DMARC and ARC at the edge (apps/mta/src/auth/). */
    inboundAuth: { policy: Env['MAIL_INBOUND_AUTH_POLICY']; timeoutMs: number };
  };
}

type Source = Record<string, string | undefined>;

/** The waits of the longest legitimate send, each bounded by MAIL_SMTP_TIMEOUT: connect, greeting,
 *  EHLO, STARTTLS, EHLO again, AUTH, MAIL, RCPT, DATA, and the reply to the end of data. */
export const SMTP_SEND_STEPS = 10;

function sendDeadlineOf(env: Env): number {
  return env.MAIL_SMTP_SEND_DEADLINE ?? SMTP_SEND_STEPS * env.MAIL_SMTP_TIMEOUT;
}

/** Problems that depend on more than one variable or on which app is starting. */
function crossFieldProblems(env: Env, app: AppName): string[] {
  const problems: string[] = [];
  if (app === 'core' && env.MAIL_SMTP_MODE === 'smtp' && !env.MAIL_SMTP_ADDR) {
    problems.push('MAIL_SMTP_ADDR: required when MAIL_SMTP_MODE=smtp (host:port of the relay), or set MAIL_SMTP_MODE=stub');
  }
  if (Boolean(env.MAIL_SMTP_USERNAME) !== Boolean(env.MAIL_SMTP_PASSWORD)) {
    problems.push('MAIL_SMTP_USERNAME / MAIL_SMTP_PASSWORD: set both or neither');
  }
  if (env.MAIL_SRS_SECRET_PREVIOUS && !env.MAIL_SRS_SECRET) {
    problems.push('MAIL_SRS_SECRET_PREVIOUS: set only beside the new MAIL_SRS_SECRET, after a change of it (docs/core.md)');
  }
  if (env.MAIL_SRS_SECRET_PREVIOUS && env.MAIL_SRS_SECRET_PREVIOUS === env.MAIL_SRS_SECRET) {
    problems.push('MAIL_SRS_SECRET_PREVIOUS: the same as MAIL_SRS_SECRET; it is the secret before the change');
  }
  if (env.MAIL_SECRETS_KEY_PREVIOUS && !env.MAIL_SECRETS_KEY) {
    problems.push('MAIL_SECRETS_KEY_PREVIOUS: set only beside the new MAIL_SECRETS_KEY, during a rotation (docs/deploy.md)');
  }
  if (env.MAIL_SECRETS_KEY_PREVIOUS && env.MAIL_SECRETS_KEY?.equals(env.MAIL_SECRETS_KEY_PREVIOUS)) {
    problems.push('MAIL_SECRETS_KEY_PREVIOUS: the same key as MAIL_SECRETS_KEY; a rotation needs a new key (openssl rand -base64 32)');
  }
  if (Boolean(env.MAIL_MTA_TLS_CERT) !== Boolean(env.MAIL_MTA_TLS_KEY)) {
    problems.push('MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY: set both (PEM files) or neither');
  }
  if (app === 'mta' && env.MAIL_MTA_DATA_MEMORY_BUDGET < env.MAIL_MTA_MAX_MESSAGE_SIZE) {
    // A message between the two could never be accepted: 452 on every retry until the sender gives up.
    problems.push('MAIL_MTA_DATA_MEMORY_BUDGET: must be at least MAIL_MTA_MAX_MESSAGE_SIZE (a message of the maximum size must fit)');
  }
  if (app === 'mta' && env.MAIL_MTA_MAX_RCPT_COMMANDS !== undefined && env.MAIL_MTA_MAX_RCPT_COMMANDS < env.MAIL_MTA_MAX_RECIPIENTS) {
    problems.push('MAIL_MTA_MAX_RCPT_COMMANDS: must be at least MAIL_MTA_MAX_RECIPIENTS (every recipient allowed needs its RCPT)');
  }
  if (app === 'mta' && env.MAIL_MTA_HARD_ERROR_LIMIT <= env.MAIL_MTA_SOFT_ERROR_LIMIT) {
    problems.push('MAIL_MTA_HARD_ERROR_LIMIT: must be larger than MAIL_MTA_SOFT_ERROR_LIMIT');
  }
  if (app === 'core' && env.MAIL_LEASE_DURATION <= env.MAIL_SMTP_TIMEOUT) {
    // A lease shorter than one send would let a second engine start the same delivery mid-send.
    problems.push('MAIL_LEASE_DURATION: must be longer than MAIL_SMTP_TIMEOUT');
  }
  if (app === 'core' && env.MAIL_WATCHDOG_STALL_THRESHOLD <= env.MAIL_SMTP_TIMEOUT) {
    // A worker beats on every reply; one that waits longer than a reply may take is stuck.
    problems.push('MAIL_WATCHDOG_STALL_THRESHOLD: must be longer than MAIL_SMTP_TIMEOUT (one reply may legitimately take that long)');
  }
  if (app === 'core' && env.MAIL_SMTP_SEND_DEADLINE !== undefined && env.MAIL_SMTP_SEND_DEADLINE < env.MAIL_SMTP_TIMEOUT) {
    problems.push('MAIL_SMTP_SEND_DEADLINE: must be at least MAIL_SMTP_TIMEOUT (a whole send includes at least one reply)');
  }
  const sendDeadline = sendDeadlineOf(env);
  if (app === 'core' && env.MAIL_SMTP_MODE !== 'stub' && env.MAIL_LEASE_DURATION <= sendDeadline + sendDeadline / 10) {
    // A live engine renews its leases; this is the second line: when renewal cannot reach
    // PostgreSQL, a send begun under a fresh lease is over (and a tenth left for recording it)
    // before any other engine may take the delivery back, so two engines never send it at once.
    problems.push(
      `MAIL_LEASE_DURATION: must be longer than the whole-send deadline plus a tenth (${Math.ceil((sendDeadline * 11) / 10)} ms; ` +
        `the deadline is MAIL_SMTP_SEND_DEADLINE, or ${SMTP_SEND_STEPS} x MAIL_SMTP_TIMEOUT when unset)`,
    );
  }
  for (const name of ['MAIL_REDIS_USERNAME', 'MAIL_REDIS_PASSWORD'] as const) {
    if (env[name] && !env.MAIL_REDIS_MASTER_ADDR) problems.push(`${name}: set without MAIL_REDIS_MASTER_ADDR`);
  }
  if (env.MAIL_REDIS_TLS_CA && !(env.MAIL_REDIS_MASTER_ADDR?.kind === 'direct' && env.MAIL_REDIS_MASTER_ADDR.tls)) {
    problems.push('MAIL_REDIS_TLS_CA: set without a rediss:// MAIL_REDIS_MASTER_ADDR');
  }
  if (env.MAIL_REDIS_SENTINEL_PASSWORD && env.MAIL_REDIS_MASTER_ADDR?.kind !== 'sentinel') {
    problems.push('MAIL_REDIS_SENTINEL_PASSWORD: set without a sentinel:// MAIL_REDIS_MASTER_ADDR');
  }
  return problems;
}

export function loadConfig(source: Source, app: AppName): PosternConfig {
  // An empty variable counts as unset, as in most shells' `VAR= cmd` habit.
  const cleaned: Source = {};
  for (const [key, value] of Object.entries(source)) {
    if (key.startsWith('MAIL_') && value !== undefined && value !== '') cleaned[key] = value;
  }
  const result = envSchema.safeParse(cleaned);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = issue.path.join('.');
      const message = issue.code === 'invalid_type' && cleaned[name] === undefined ? 'required' : issue.message;
      return `${name}: ${message}`;
    });
    throw new ConfigError(problems);
  }
  const env = result.data;
  const problems = crossFieldProblems(env, app);
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    env: env.MAIL_ENV,
    logLevel: env.MAIL_LOG_LEVEL,
    logFormat: env.MAIL_LOG_FORMAT,
    postgres: {
      dsn: env.MAIL_POSTGRES_PRIMARY_DSN,
      poolMax: env.MAIL_POSTGRES_POOL_MAX,
      connectTimeoutMs: env.MAIL_POSTGRES_CONNECT_TIMEOUT,
      statementTimeoutMs: env.MAIL_POSTGRES_STATEMENT_TIMEOUT,
    },
    redis: env.MAIL_REDIS_MASTER_ADDR
      ? {
          endpoint: env.MAIL_REDIS_MASTER_ADDR,
          username: env.MAIL_REDIS_USERNAME,
          password: env.MAIL_REDIS_PASSWORD,
          sentinelPassword: env.MAIL_REDIS_SENTINEL_PASSWORD,
          tlsCaFile: env.MAIL_REDIS_TLS_CA,
          consumerGroup: env.MAIL_REDIS_CONSUMER_GROUP,
        }
      : null,
    templateDir: env.MAIL_TEMPLATE_DIR,
    urgentCategories: env.MAIL_URGENT_CATEGORIES,
    smtp: {
      mode: env.MAIL_SMTP_MODE,
      addr: env.MAIL_SMTP_ADDR,
      username: env.MAIL_SMTP_USERNAME,
      password: env.MAIL_SMTP_PASSWORD,
      from: env.MAIL_SMTP_FROM,
      timeoutMs: env.MAIL_SMTP_TIMEOUT,
      sendDeadlineMs: sendDeadlineOf(env),
      mxPort: env.MAIL_MX_PORT,
      mxPrivateAddresses: env.MAIL_MX_PRIVATE_ADDRESSES,
      mtaStsPort: env.MAIL_MTA_STS_PORT,
    },
    secretsKey: env.MAIL_SECRETS_KEY ? secretsKeyOf(env.MAIL_SECRETS_KEY, env.MAIL_SECRETS_KEY_PREVIOUS ?? null) : null,
    srsSecret: env.MAIL_SRS_SECRET ?? null,
    srsPreviousSecret: env.MAIL_SRS_SECRET_PREVIOUS ?? null,
    dns: { servers: env.MAIL_DNS_SERVERS ?? null },
    shaping: {
      maxConnections: env.MAIL_SHAPING_MAX_CONNECTIONS,
      messagesPerConnection: env.MAIL_SHAPING_MESSAGES_PER_CONNECTION,
      ratePerSecond: env.MAIL_SHAPING_RATE ?? null,
      idleTimeoutMs: env.MAIL_SHAPING_IDLE_TIMEOUT,
      deferMs: env.MAIL_SHAPING_DEFER,
      backoffMs: env.MAIL_SHAPING_BACKOFF,
      sitesFile: env.MAIL_SHAPING_SITES_FILE ?? null,
    },
    engine: {
      attemptWorkerConcurrency: env.MAIL_ATTEMPT_WORKER_CONCURRENCY,
      payloadMemoryBudgetBytes: env.MAIL_PAYLOAD_MEMORY_BUDGET,
      shutdownTimeoutMs: env.MAIL_SHUTDOWN_TIMEOUT,
      retryLadderMs: env.MAIL_RETRY_LADDER ?? null,
      leaseDurationMs: env.MAIL_LEASE_DURATION,
      queueLifetimeMs: env.MAIL_QUEUE_LIFETIME,
      claimBatchSize: env.MAIL_CLAIM_BATCH_SIZE,
      claimAhead: env.MAIL_CLAIM_AHEAD,
      pollIntervalMs: env.MAIL_SCHEDULER_POLL_INTERVAL,
      heartbeatIntervalMs: env.MAIL_HEARTBEAT_INTERVAL,
      watchdogStallThresholdMs: env.MAIL_WATCHDOG_STALL_THRESHOLD,
      streamReclaimIdleMs: env.MAIL_STREAM_RECLAIM_IDLE,
      streamConcurrency: env.MAIL_STREAM_CONCURRENCY,
      retentionAgeMs: env.MAIL_RETENTION_AGE,
      retentionIntervalMs: env.MAIL_RETENTION_INTERVAL,
      idempotencyWindowMs: env.MAIL_IDEMPOTENCY_WINDOW,
    },
    http: {
      internal: env.MAIL_INTERNAL_HTTP_ADDR,
      internalApiClients: env.MAIL_INTERNAL_API_CLIENTS,
      mta: env.MAIL_MTA_HTTP_ADDR,
      api: env.MAIL_API_HTTP_ADDR,
      maxConnections: env.MAIL_HTTP_MAX_CONNECTIONS,
    },
    mta: {
      listen: env.MAIL_SMTP_LISTEN_ADDR,
      hostname: env.MAIL_MTA_HOSTNAME,
      maxMessageSize: env.MAIL_MTA_MAX_MESSAGE_SIZE,
      // The header is part of the message: a smaller MAIL_MTA_MAX_MESSAGE_SIZE caps it first, so
      // an edge configured with 64KiB messages does not fail to start over the header's default.
      maxHeaderSize: Math.min(env.MAIL_MTA_MAX_HEADER_SIZE, env.MAIL_MTA_MAX_MESSAGE_SIZE),
      dataMemoryBudget: env.MAIL_MTA_DATA_MEMORY_BUDGET,
      maxRecipients: env.MAIL_MTA_MAX_RECIPIENTS,
      lookupTimeoutMs: env.MAIL_MTA_LOOKUP_TIMEOUT,
      maxClients: env.MAIL_MTA_MAX_CLIENTS,
      maxClientsPerNetwork: env.MAIL_MTA_MAX_CLIENTS_PER_NETWORK,
      processes: env.MAIL_MTA_PROCESSES,
      greetingDelayMs: env.MAIL_MTA_GREETING_DELAY,
      idleTimeoutMs: env.MAIL_MTA_IDLE_TIMEOUT,
      dataTimeoutMs: env.MAIL_MTA_DATA_TIMEOUT,
      rateLimitPerMinute: env.MAIL_MTA_RATE_LIMIT_PER_MINUTE,
      maxRcptCommands: env.MAIL_MTA_MAX_RCPT_COMMANDS ?? 2 * env.MAIL_MTA_MAX_RECIPIENTS,
      softErrorLimit: env.MAIL_MTA_SOFT_ERROR_LIMIT,
      errorSleepMs: env.MAIL_MTA_ERROR_SLEEP,
      hardErrorLimit: env.MAIL_MTA_HARD_ERROR_LIMIT,
      clientLookupConcurrency: env.MAIL_MTA_CLIENT_LOOKUP_CONCURRENCY,
      maxHops: env.MAIL_MTA_MAX_HOPS,
      duplicateWindowMs: env.MAIL_MTA_DUPLICATE_WINDOW,
      tls:
        env.MAIL_MTA_TLS_CERT && env.MAIL_MTA_TLS_KEY
          ? { certFile: env.MAIL_MTA_TLS_CERT, keyFile: env.MAIL_MTA_TLS_KEY, reloadIntervalMs: env.MAIL_MTA_TLS_RELOAD_INTERVAL }
          : null,
      inboundAuth: { policy: env.MAIL_INBOUND_AUTH_POLICY, timeoutMs: env.MAIL_INBOUND_AUTH_TIMEOUT },
    },
  };
}

/** MAIL_* variables Postern does not know: most likely typos, worth a warning at boot. */
export function unknownMailVariables(source: Source): string[] {
  const known = new Set(Object.keys(envSchema.shape));
  return Object.keys(source).filter((key) => key.startsWith('MAIL_') && !known.has(key));
}
