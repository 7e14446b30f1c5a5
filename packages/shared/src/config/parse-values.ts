// Parsers for the value formats the environment uses. Each returns a value or a human sentence
// saying what was wrong; the config loader collects every sentence into one error.

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

export interface ListenAddress {
  host: string;
  port: number;
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const DURATION_WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The longest wait a duration that a timer waits on may ask for. Node holds at most 2^31-1 ms
 *  (about 596 h) in a timer and fires a longer one after 1 ms (TimeoutOverflowWarning): measured,
 *  MAIL_SHUTDOWN_TIMEOUT=1000h made the engine give up its drain and exit 1 on the first SIGTERM.
 *  500 h leaves room for what is added to a duration (a deadline's margin, a doubled timeout). */
export const MAX_TIMER_DURATION_MS = 500 * 3_600_000;

export interface DurationBounds {
  /** Refuse 0: where 0 would switch a bound off (a timeout of 0 is none) or spin a loop. */
  positive?: boolean;
  /** Refuse longer durations (ms); said in hours. */
  maxMs?: number;
}

/** Go-style durations ("10s", "1m30s", "250ms"), as in the runbook. A bare number is refused:
 *  "10" could mean seconds or milliseconds, and guessing wrong is how timeouts go unnoticed. */
export function parseDuration(text: string, bounds: DurationBounds = {}): Parsed<number> {
  const trimmed = text.trim();
  if (!DURATION_WHOLE.test(trimmed)) {
    return { ok: false, problem: `"${text}" is not a duration; write it with a unit, e.g. 500ms, 10s, 2m, 1h` };
  }
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(DURATION_PART)) {
    total += Number(amount) * (UNIT_MS[unit as string] ?? 0);
  }
  const value = Math.round(total);
  if (bounds.positive && value <= 0) return { ok: false, problem: `"${text}" must be more than 0 (0 would turn a timeout off or spin a loop)` };
  if (bounds.maxMs !== undefined && value > bounds.maxMs) {
    return { ok: false, problem: `"${text}" is longer than ${bounds.maxMs / 3_600_000}h, the most this setting takes` };
  }
  return { ok: true, value };
}

/** "1m,5m,10m": a list of durations (the retry ladder override). */
export function parseDurationList(text: string, bounds: DurationBounds = {}): Parsed<number[]> {
  const values: number[] = [];
  for (const part of text.split(',')) {
    const parsed = parseDuration(part, bounds);
    if (!parsed.ok) return parsed;
    values.push(parsed.value);
  }
  return { ok: true, value: values };
}

/** An address or DSN as a refusal or a log line may repeat it: everything up to its last `@` (the
 *  userinfo of a URL, such as redis://:password@host) is masked, since it goes to stderr and on
 *  into the logs. Up to the last one: a password may hold `:` or an unencoded `@`, and masking too
 *  much is harmless. */
export function withoutCredentials(text: string): string {
  return text.replace(/^(\s*[A-Za-z][A-Za-z0-9+.-]*:\/\/)?.*@/s, '$1***@');
}

/** "host:port", "[::1]:port" or ":port" (all interfaces). */
export function parseListenAddress(text: string): Parsed<ListenAddress> {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim());
  if (!match) return { ok: false, problem: `"${withoutCredentials(text)}" is not host:port (e.g. 127.0.0.1:4000 or [::1]:4000)` };
  const port = Number(match[3]);
  if (port > 65535) return { ok: false, problem: `port ${port} is out of range (0-65535)` };
  const host = match[1] ?? (match[2] === '' ? '0.0.0.0' : (match[2] as string));
  return { ok: true, value: { host, port } };
}

/** Where Redis is: one server (over TLS with `tls`), or the master a set of Sentinels names (and
 *  names again after a failover). */
export type RedisEndpoint =
  | { kind: 'direct'; addr: ListenAddress; tls: boolean }
  | { kind: 'sentinel'; sentinels: ListenAddress[]; masterName: string };

const SENTINEL_FORM = /^sentinel:\/\/([^/]+)\/([A-Za-z0-9._-]{1,100})$/;
const TLS_SCHEME = 'rediss://';

/** "host:port", "rediss://host:port" (TLS), or "sentinel://host:port,host:port/mastername". */
export function parseRedisEndpoint(text: string): Parsed<RedisEndpoint> {
  const trimmed = text.trim();
  if (trimmed.startsWith(TLS_SCHEME)) {
    const rest = trimmed.slice(TLS_SCHEME.length);
    // The user and password have variables of their own: a URL's userinfo would be the one
    // place a password could be read back from a log line of the address.
    if (rest.includes('@')) {
      return { ok: false, problem: `"${withoutCredentials(text)}" holds credentials: give them in MAIL_REDIS_USERNAME and MAIL_REDIS_PASSWORD, and the address as rediss://host:port` };
    }
    const addr = parseListenAddress(rest.replace(/\/$/, ''));
    return addr.ok ? { ok: true, value: { kind: 'direct', addr: addr.value, tls: true } } : addr;
  }
  if (!trimmed.startsWith('sentinel://')) {
    const addr = parseListenAddress(trimmed);
    return addr.ok ? { ok: true, value: { kind: 'direct', addr: addr.value, tls: false } } : addr;
  }
  const match = SENTINEL_FORM.exec(trimmed);
  if (!match) return { ok: false, problem: `"${withoutCredentials(text)}" is not sentinel://host:port[,host:port...]/mastername` };
  const sentinels: ListenAddress[] = [];
  for (const part of (match[1] as string).split(',')) {
    const addr = parseListenAddress(part);
    if (!addr.ok) return { ok: false, problem: `sentinel ${addr.problem}` };
    sentinels.push(addr.value);
  }
  return { ok: true, value: { kind: 'sentinel', sentinels, masterName: match[2] as string } };
}

export function parsePositiveInteger(text: string, max = Number.MAX_SAFE_INTEGER, min = 1): Parsed<number> {
  if (!/^\d+$/.test(text.trim())) return { ok: false, problem: `"${text}" is not a whole number` };
  const value = Number(text.trim());
  if (value < min || value > max) return { ok: false, problem: `${value} is outside ${min}..${max}` };
  return { ok: true, value };
}

/** MAIL_MTA_PROCESSES: a count of processes, or "auto" for as many as Node says the machine can
 *  run in parallel (os.availableParallelism(): the CPUs this process may use). */
export function parseProcessCount(text: string, parallelism: number, max = 256): Parsed<number> {
  if (text.trim().toLowerCase() === 'auto') return { ok: true, value: Math.max(1, Math.min(parallelism, max)) };
  if (!/^\d+$/.test(text.trim())) return { ok: false, problem: `"${text}" is neither a whole number of processes nor "auto"` };
  return parsePositiveInteger(text, max);
}

export function parseByteSize(text: string): Parsed<number> {
  const match = /^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(text.trim());
  if (!match) return { ok: false, problem: `"${text}" is not a size (e.g. 25MiB, 1048576)` };
  const unit = (match[2] ?? 'b').toLowerCase();
  const factor: Record<string, number> = {
    b: 1, kb: 1000, kib: 1024, mb: 1_000_000, mib: 1024 ** 2, gb: 1_000_000_000, gib: 1024 ** 3,
  };
  return { ok: true, value: Number(match[1]) * (factor[unit] ?? 1) };
}

/** A message rate, "N/s", "N/m" or "N/h" (per second, minute, hour), as messages per second. */
export function parseRate(text: string): Parsed<number> {
  const match = /^(\d+)\s*\/\s*(s|m|h)$/i.exec(text.trim());
  if (!match) return { ok: false, problem: `"${text}" is not a rate (e.g. 100/s, 600/m, 10000/h)` };
  const count = Number(match[1]);
  if (count < 1 || count > 1_000_000) return { ok: false, problem: `${count} is outside 1..1000000` };
  const perSeconds: Record<string, number> = { s: 1, m: 60, h: 3600 };
  return { ok: true, value: count / (perSeconds[(match[2] ?? 's').toLowerCase()] ?? 1) };
}
