// Every environment variable Postern reads, with its default. The names of the runbook (no-health-endpoints, docs/incidents.md)
// are kept; variables Postern adds follow the same MAIL_ prefix. Documented in the README's
// configuration table; keep the two in step.
import os from 'node:os';
import { parse as parseConnectionString } from 'pg-connection-string';
import { z } from 'zod';
import { InvalidAddressError, normalizeAddress } from '../addresses/normalize-address.ts';
import { parseDnsServers } from '../dns/dns-servers.ts';
import { DEFAULT_URGENT_CATEGORIES, parseCategoryList } from '../intake/urgency.ts';
import { parseSecretsKey } from '../secrets/secrets-key.ts';
import { MIN_SECRET_LENGTH } from '../srs/srs.ts';
import { HTTP_LISTENERS } from './http-listeners.ts';
import {
  MAX_TIMER_DURATION_MS,
  type Parsed,
  parseByteSize,
  parseDuration,
  parseDurationList,
  parseListenAddress,
  parsePositiveInteger,
  parseProcessCount,
  parseRate,
  parseRedisEndpoint,
} from './parse-values.ts';

function parsedBy<T>(parse: (text: string) => Parsed<T>) {
  return z.string().transform((text, ctx): T => {
    const parsed = parse(text);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: parsed.problem });
      return z.NEVER;
    }
    return parsed.value;
  });
}

/** An address by the same parser as every other boundary (zod's z.email() is a looser regex);
 *  kept as written, since it is what Postern writes into From: and MAIL FROM. */
function parseAddress(text: string): Parsed<string> {
  try {
    normalizeAddress(text);
    return { ok: true, value: text };
  } catch (error) {
    if (error instanceof InvalidAddressError) return { ok: false, problem: error.message };
    throw error;
  }
}

// Every duration a timer waits on is at most MAX_TIMER_DURATION_MS (a longer one would fire at
// once) and more than 0 (a timeout of 0 is none; a poll of 0 spins); `durationFromZero` where 0
// means something documented (greet at once, no sleep, read once), `sqlWindow` for the ages compared
// in SQL only, never waited on.
const timerDuration = (text: string) => parseDuration(text, { positive: true, maxMs: MAX_TIMER_DURATION_MS });
const duration = (fallback: string) => parsedBy(timerDuration).prefault(fallback);
const durationFromZero = (fallback: string) =>
  parsedBy((text) => parseDuration(text, { maxMs: MAX_TIMER_DURATION_MS })).prefault(fallback);
const WINDOW_MAX_MS = 100 * 8_760 * 3_600_000;
const sqlWindow = (fallback: string) => parsedBy((text) => parseDuration(text, { maxMs: WINDOW_MAX_MS })).prefault(fallback);
const listenAddress = (fallback: string) => parsedBy(parseListenAddress).prefault(fallback);
const count = (fallback: string, max?: number) =>
  parsedBy((text) => parsePositiveInteger(text, max)).prefault(fallback);
const countFromZero = (fallback: string, max?: number) =>
  parsedBy((text) => parsePositiveInteger(text, max, 0)).prefault(fallback);

/** A file the DSN names (sslrootcert, sslcert, sslkey) that its parser could not read: the parser
 *  reads them as it parses, and that failure said the URL could not be read (check its brackets). */
function unreadableDsnFile(error: unknown): string | null {
  const { code, path } = (error ?? {}) as { code?: unknown; path?: unknown };
  if (typeof path !== 'string' || typeof code !== 'string') return null;
  return `names a file that cannot be read: ${path} (${code}): sslrootcert, sslcert and sslkey must be files this process can read`;
}

/** Read by the parser node-postgres reads it with: a DSN it cannot read (`postgres://u:pw@[::1/db`,
 *  a port over 65535) was a TypeError with a stack trace when the pool first connected. A file it
 *  names that cannot be read is said apart (unreadableDsnFile). */
function readableDsn(text: string): boolean {
  try {
    parseConnectionString(text);
    return true;
  } catch (error) {
    return unreadableDsnFile(error) !== null;
  }
}

/** What a readable DSN asks that node-postgres would not do, or null. It connects to one host and
 *  has no `target_session_attrs`: libpq's multi-host form (`?host=a,b`) was a host named "a,b" and
 *  failed ENOTFOUND, and a DSN asking for a standby would have been given whatever the host is.
 *  Postern itself refuses a standby on every connection (db/pool.ts), which is what `read-write`
 *  and `primary` ask for: those are accepted. */
function unsupportedDsnPart(text: string): string | null {
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(text);
  } catch (error) {
    return unreadableDsnFile(error);
  }
  if (parsed.host?.includes(',')) {
    return `names several hosts (${parsed.host}): PostgreSQL's Node.js client connects to one; name the cluster's read-write endpoint (docs/deploy.md, "PostgreSQL high availability")`;
  }
  const attrs = (parsed as { target_session_attrs?: string }).target_session_attrs;
  if (attrs !== undefined && !['any', 'read-write', 'primary'].includes(attrs)) {
    return `asks for target_session_attrs=${attrs}: Postern reads and writes the primary only and refuses a standby's connections`;
  }
  return null;
}

const postgresDsn = z
  .string()
  .refine((text) => /^postgres(ql)?:\/\//.test(text), 'must be a postgres:// or postgresql:// URL')
  .refine(readableDsn, 'is not a URL PostgreSQL\'s client can read (check the brackets of an IPv6 host, the port, and that a password\'s @ : / ? # are percent-encoded)')
  .superRefine((text, context) => {
    const problem = unsupportedDsnPart(text);
    if (problem !== null) context.addIssue({ code: 'custom', message: problem });
  });

export const envSchema = z.object({
  MAIL_ENV: z.enum(['development', 'production', 'test']).default('development'),
  MAIL_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAIL_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),

  // PostgreSQL: the durable state of everything.
  MAIL_POSTGRES_PRIMARY_DSN: postgresDsn,
  MAIL_POSTGRES_POOL_MAX: count('10', 1000),
  MAIL_POSTGRES_CONNECT_TIMEOUT: duration('5s'),
  MAIL_POSTGRES_STATEMENT_TIMEOUT: duration('15s'),

  // Redis: the command stream for internal producers. Unset: stream intake off.
  MAIL_REDIS_MASTER_ADDR: parsedBy(parseRedisEndpoint).optional(),
  MAIL_REDIS_USERNAME: z.string().optional(),
  MAIL_REDIS_PASSWORD: z.string().optional(),
  MAIL_REDIS_TLS_CA: z.string().min(1).optional(),
  MAIL_REDIS_SENTINEL_PASSWORD: z.string().optional(),
  MAIL_REDIS_CONSUMER_GROUP: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/).default('postern-core'),

  MAIL_TEMPLATE_DIR: z.string().min(1).default('templates'),

  // Outbound: through a relay (smtp), directly to each recipient domain's MX hosts (mx), or nowhere (stub).
  MAIL_SMTP_MODE: z.enum(['smtp', 'mx', 'stub']).default('smtp'),
  MAIL_SMTP_ADDR: parsedBy(parseListenAddress).optional(),
  MAIL_SMTP_USERNAME: z.string().min(1).optional(),
  MAIL_SMTP_PASSWORD: z.string().min(1).optional(),
  MAIL_SMTP_FROM: parsedBy(parseAddress).prefault('postern@localhost.localdomain'),
  MAIL_SMTP_TIMEOUT: duration('30s'),
  // Whole-send deadline: a relay that keeps the socket busy (a reply trickled one line at a time)
  // never trips the per-command timeout. Unset: SMTP_SEND_STEPS x MAIL_SMTP_TIMEOUT (load-config.ts).
  MAIL_SMTP_SEND_DEADLINE: parsedBy(timerDuration).optional(),
  // The port MX hosts are reached on in mx mode: 25 on the internet; tests point it elsewhere.
  MAIL_MX_PORT: count('25', 65_535),
  // MX hosts at loopback, private, link-local, carrier-grade NAT or unique-local addresses in mx
  // mode: refused (a recipient domain's DNS must not steer the engine at hosts inside the network:
  // SSRF), or allowed where the MX hosts really are internal (a private network; the tests).
  MAIL_MX_PRIVATE_ADDRESSES: z.enum(['refuse', 'allow']).default('refuse'),
  // The HTTPS port MTA-STS policies are fetched on in mx mode: 443 (RFC 8461); tests point it elsewhere.
  MAIL_MTA_STS_PORT: count('443', 65_535),
  // The servers the mail resolver asks (packages/shared/src/dns/). Unset: the system's resolvers.
  MAIL_DNS_SERVERS: parsedBy(parseDnsServers).optional(),
  // Shaping per destination site in mx mode (docs/core.md, "Shaping"): limits every engine shares,
  // per site (the set of MX hosts a domain resolves to); a site's own line in the sites file wins.
  MAIL_SHAPING_MAX_CONNECTIONS: count('10', 1000),
  MAIL_SHAPING_MESSAGES_PER_CONNECTION: count('100', 100_000),
  // Unset: no rate limit per site.
  MAIL_SHAPING_RATE: parsedBy(parseRate).optional(),
  MAIL_SHAPING_IDLE_TIMEOUT: durationFromZero('5s'),
  // How long a delivery waits when its site has no free connection slot or no rate token left.
  MAIL_SHAPING_DEFER: duration('5s'),
  // A site that refuses connections or greets with 4xx on every MX host is left alone this long,
  // doubling for each failure in a row (at most 32 times as long); in smtp mode, a relay host whose
  // session could not be set up twice in a row (apps/core/src/relay/relay-health.ts).
  MAIL_SHAPING_BACKOFF: durationFromZero('1m'),
  // Unset: the sites file shipped with the engine (apps/core/src/relay/site-shaping.txt).
  MAIL_SHAPING_SITES_FILE: z.string().min(1).optional(),

  // Categories whose deliveries are claimed before every other due delivery (login codes, password
  // resets: someone is waiting); comma-separated, or none (packages/shared/src/intake/urgency.ts).
  MAIL_URGENT_CATEGORIES: parsedBy(parseCategoryList).prefault(DEFAULT_URGENT_CATEGORIES.join(',')),

  // Seals the secrets kept in PostgreSQL (DKIM private keys, routes' relay passwords): 32 bytes,
  // base64. Needed by the API and the engine once one exists (packages/shared/src/secrets/).
  MAIL_SECRETS_KEY: parsedBy(parseSecretsKey).optional(),
  // During a rotation of MAIL_SECRETS_KEY only: the key being replaced, which still opens what it
  // sealed until `postern secrets reseal` has sealed it again with the new one.
  MAIL_SECRETS_KEY_PREVIOUS: parsedBy(parseSecretsKey).optional(),
  // Keys the SRS hash of forwarded mail's envelope sender; the edge and the engine need the same one.
  MAIL_SRS_SECRET: z.string().min(MIN_SECRET_LENGTH, `must be at least ${MIN_SECRET_LENGTH} characters`).optional(),
  // After a change of MAIL_SRS_SECRET, for as long as the addresses it made are accepted (21 days):
  // the old secret, still accepted in the hash of a bounce, never used to make an address.
  MAIL_SRS_SECRET_PREVIOUS: z.string().min(MIN_SECRET_LENGTH, `must be at least ${MIN_SECRET_LENGTH} characters`).optional(),

  // Engine tuning.
  MAIL_ATTEMPT_WORKER_CONCURRENCY: count('8', 1000),
  // Bytes of relayed messages one engine holds for its attempts at once; an attempt whose message
  // does not fit waits for others to end. A message larger than all of it goes alone (docs/core.md).
  MAIL_PAYLOAD_MEMORY_BUDGET: parsedBy(parseByteSize).prefault('128MiB'),
  MAIL_SHUTDOWN_TIMEOUT: durationFromZero('30s'),
  // Delivery engine (apps/core). The retry ladder is fixed (docs/core.md); the override exists so
  // tests and staging can shorten it: a comma-separated list of waits, e.g. "1s,2s".
  MAIL_RETRY_LADDER: parsedBy((text) => parseDurationList(text, { maxMs: WINDOW_MAX_MS })).optional(),
  // A claimed delivery is leased for this long and renewed by its live engine; an engine that dies
  // leaves it claimable after it. Must outlast a whole send plus a tenth (load-config.ts).
  MAIL_LEASE_DURATION: duration('6m'),
  // Postfix's maximal_queue_lifetime: a delivery that would be put back to wait (a deferral, a DKIM
  // key it cannot use, a temporary failure with the ladder left) after this long in the queue is
  // dead-lettered and bounced instead. Longer than the default ladder (~4 d 4 h), so the ladder ends
  // normally failing mail first. More than 0 (0 would end every delivery at its first wait; there is
  // no "for ever": at most 500h) — docs/core.md, "The queue lifetime".
  MAIL_QUEUE_LIFETIME: duration('120h'),
  MAIL_CLAIM_BATCH_SIZE: count('32', 10_000),
  // Most deliveries claimed for workers that only wait for their outcome's commit (0: none).
  MAIL_CLAIM_AHEAD: countFromZero('32', 10_000),
  // Fallback when no NOTIFY arrives (the listener connection is down, or a notify was missed).
  MAIL_SCHEDULER_POLL_INTERVAL: duration('1s'),
  MAIL_HEARTBEAT_INTERVAL: duration('5s'),
  // A loop whose heartbeat is older than this while work is due is restarted (stalled-worker, docs/incidents.md).
  MAIL_WATCHDOG_STALL_THRESHOLD: duration('2m'),
  // Stream entries pending this long with a consumer are taken over (XAUTOCLAIM).
  MAIL_STREAM_RECLAIM_IDLE: duration('2m'),
  // Stream commands one engine accepts at once, each in its own transaction on its own connection:
  // one at a time, every command waited for its own round trips and WAL flush (about 600 a second).
  MAIL_STREAM_CONCURRENCY: count('8', 64),
  // Payloads and attempts older than this are purged, in small batches.
  MAIL_RETENTION_AGE: sqlWindow('720h'),
  MAIL_RETENTION_INTERVAL: duration('1m'),
  // Idempotency reservations older than this are purged: a producer retrying a command after it
  // gets a fresh delivery. Must cover the producers' longest retry horizon.
  MAIL_IDEMPOTENCY_WINDOW: sqlWindow('720h'),

  // Listeners.
  MAIL_INTERNAL_HTTP_ADDR: listenAddress(HTTP_LISTENERS.core.fallback),
  // Who may read the engine's internal API (it asks for no token): clients on the engine's own host
  // only, whatever address it listens on, or any client that reaches the listener.
  MAIL_INTERNAL_API_CLIENTS: z.enum(['loopback', 'any']).default('loopback'),
  MAIL_SMTP_LISTEN_ADDR: listenAddress('127.0.0.1:2525'),
  MAIL_MTA_HTTP_ADDR: listenAddress(HTTP_LISTENERS.mta.fallback),
  MAIL_API_HTTP_ADDR: listenAddress(HTTP_LISTENERS.api.fallback),
  // Connections open at once on each HTTP listener above; at the limit the oldest one not being
  // answered makes room (packages/shared/src/http/ops-server.ts).
  MAIL_HTTP_MAX_CONNECTIONS: count('1000', 100_000),

  // The SMTP edge.
  MAIL_MTA_HOSTNAME: z.string().min(1).optional(),
  MAIL_MTA_MAX_MESSAGE_SIZE: parsedBy(parseByteSize).prefault('25MiB'),
  // Bytes of the header section (up to the blank line; all of a message without one); past it 552
  // 5.3.4. Exchange's MaxHeaderSize, the limit of an MTA that refuses too (Postfix's 100 KiB
  // header_size_limit truncates instead): what the header parsers and mailauth read stays bounded.
  MAIL_MTA_MAX_HEADER_SIZE: parsedBy(parseByteSize).prefault('256KiB'),
  // Bytes of DATA held in memory across all messages in flight; past it a message gets 452 4.3.1.
  MAIL_MTA_DATA_MEMORY_BUDGET: parsedBy(parseByteSize).prefault('512MiB'),
  // RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients.
  MAIL_MTA_MAX_RECIPIENTS: count('100', 10_000),
  MAIL_MTA_LOOKUP_TIMEOUT: duration('2s'),
  MAIL_MTA_MAX_CLIENTS: count('200', 100_000),
  // Of them, at most this many from one client network (IPv4 address, IPv6 /64), as Postfix's
  // smtpd_client_connection_count_limit (also 50).
  MAIL_MTA_MAX_CLIENTS_PER_NETWORK: count('50', 100_000),
  // Edge processes on this machine, each with its own SMTP socket on MAIL_SMTP_LISTEN_ADDR
  // (SO_REUSEPORT: the kernel spreads the connections); "auto": os.availableParallelism().
  // 1 runs the edge in one process, as before; more forks workers under a primary (apps/mta/src/cluster/).
  MAIL_MTA_PROCESSES: parsedBy((text) => parseProcessCount(text, os.availableParallelism())).prefault('1'),
  // How long the edge waits before its greeting to catch clients that talk first (early talkers:
  // 421 and closed). 0 greets at once; with a delay, a client network that passed once is greeted
  // at once for a day, as Postfix's postscreen remembers a passed pregreet test.
  MAIL_MTA_GREETING_DELAY: durationFromZero('0s'),
  // RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command.
  MAIL_MTA_IDLE_TIMEOUT: duration('5m'),
  // A whole DATA phase must finish within this, however slowly the bytes trickle in.
  MAIL_MTA_DATA_TIMEOUT: duration('10m'),
  MAIL_MTA_RATE_LIMIT_PER_MINUTE: count('600', 1_000_000),
  // RCPT commands per transaction, repeated and refused ones included (a harvest's 1,000 identical
  // RCPTs stop here). At least MAIL_MTA_MAX_RECIPIENTS; unset: twice MAIL_MTA_MAX_RECIPIENTS.
  MAIL_MTA_MAX_RCPT_COMMANDS: parsedBy((text) => parsePositiveInteger(text, 100_000)).optional(),
  // Errors per session (refused RCPTs, bad commands, syntax errors), as Postfix's
  // smtpd_soft_error_limit / smtpd_error_sleep_time / smtpd_hard_error_limit.
  MAIL_MTA_SOFT_ERROR_LIMIT: count('10', 10_000),
  MAIL_MTA_ERROR_SLEEP: durationFromZero('1s'),
  MAIL_MTA_HARD_ERROR_LIMIT: count('20', 10_000),
  // Recipient lookups one client network (IPv4 address, IPv6 /64) may have running at once.
  MAIL_MTA_CLIENT_LOOKUP_CONCURRENCY: count('4', 1_000),
  // RFC 5321 6.3: more Received: headers than this and the message is refused (554 5.4.6), like
  // Postfix's hopcount_limit.
  MAIL_MTA_MAX_HOPS: count('50', 10_000),
  // How long a committed message is remembered by its fingerprint, so that a sender's retry of
  // a message whose first reply it never saw gets the first queue id instead of a second copy.
  MAIL_MTA_DUPLICATE_WINDOW: durationFromZero('2h'),
  // SPF, DKIM, DMARC and ARC of each message received (docs/mta.md, "Inbound authentication"):
  // annotate records the verdicts (Authentication-Results: and mail.messages.auth_results); enforce
  // also refuses a certain DMARC failure of a p=reject domain (550) and what it cannot decide (451);
  // off checks nothing (like-for-like benchmarks against an MTA that checks nothing).
  MAIL_INBOUND_AUTH_POLICY: z.enum(['annotate', 'enforce', 'off']).default('annotate'),
  // The whole evaluation of one message (every DNS lookup and the body hash): past it each check
  // not finished is a temperror.
  MAIL_INBOUND_AUTH_TIMEOUT: duration('10s'),
  MAIL_MTA_TLS_CERT: z.string().min(1).optional(),
  MAIL_MTA_TLS_KEY: z.string().min(1).optional(),
  // How often the edge reads the two files again and, if they changed into a usable pair, presents
  // the new certificate (a renewal needs no restart); 0s: read once, at start.
  MAIL_MTA_TLS_RELOAD_INTERVAL: durationFromZero('1m'),
});

export type Env = z.infer<typeof envSchema>;
