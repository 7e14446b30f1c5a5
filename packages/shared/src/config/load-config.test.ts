import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors/config-error.ts';
import { loadConfig, unknownMailVariables } from './load-config.ts';
import { parseProcessCount, withoutCredentials } from './parse-values.ts';

const minimal = { MAIL_POSTGRES_PRIMARY_DSN: 'postgres://u:p@127.0.0.1:5432/postern' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(minimal, 'mta');
    expect(config.http.internal).toEqual({ host: '127.0.0.1', port: 4001 });
    expect(config.http.api).toEqual({ host: '127.0.0.1', port: 4000 });
    expect(config.http.mta).toEqual({ host: '127.0.0.1', port: 4002 });
    expect(config.mta.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(config.mta.maxRecipients).toBe(100);
    expect(config.mta.lookupTimeoutMs).toBe(2000);
    expect(config.mta.maxMessageSize).toBe(25 * 1024 * 1024);
    expect(config.mta.maxHeaderSize).toBe(256 * 1024);
    expect(config.mta.dataMemoryBudget).toBe(512 * 1024 * 1024);
    expect(config.redis).toBeNull();
    expect(config.templateDir).toBe('templates');
    expect(config.smtp.mode).toBe('smtp');
  });

  it('reads the shaping defaults and a rate per second, minute or hour', () => {
    const mx = { ...minimal, MAIL_SMTP_MODE: 'mx' };
    expect(loadConfig(mx, 'core').shaping).toEqual({
      maxConnections: 10,
      messagesPerConnection: 100,
      ratePerSecond: null,
      idleTimeoutMs: 5_000,
      deferMs: 5_000,
      backoffMs: 60_000,
      sitesFile: null,
    });
    expect(loadConfig({ ...mx, MAIL_SHAPING_RATE: '600/m' }, 'core').shaping.ratePerSecond).toBe(10);
    expect(loadConfig({ ...mx, MAIL_SHAPING_RATE: '7200/h' }, 'core').shaping.ratePerSecond).toBe(2);
    expect(() => loadConfig({ ...mx, MAIL_SHAPING_RATE: '10' }, 'core')).toThrow(/MAIL_SHAPING_RATE: "10" is not a rate/);
    expect(() => loadConfig({ ...mx, MAIL_SHAPING_MAX_CONNECTIONS: '0' }, 'core')).toThrow(/MAIL_SHAPING_MAX_CONNECTIONS: 0 is outside/);
  });

  it('caps the connections of every HTTP listener: 1000 unless told, a whole number 1..100000', () => {
    expect(loadConfig(minimal, 'api').http.maxConnections).toBe(1000);
    expect(loadConfig({ ...minimal, MAIL_HTTP_MAX_CONNECTIONS: '50' }, 'mta').http.maxConnections).toBe(50);
    expect(() => loadConfig({ ...minimal, MAIL_HTTP_MAX_CONNECTIONS: '0' }, 'api')).toThrow(/MAIL_HTTP_MAX_CONNECTIONS: 0 is outside/);
    expect(() => loadConfig({ ...minimal, MAIL_HTTP_MAX_CONNECTIONS: 'lots' }, 'mta')).toThrow(/MAIL_HTTP_MAX_CONNECTIONS/);
  });

  it('reports every invalid or missing variable in one error', () => {
    let error: unknown;
    try {
      loadConfig(
        {
          MAIL_SMTP_TIMEOUT: '10',
          MAIL_API_HTTP_ADDR: 'localhost',
          MAIL_SMTP_MODE: 'carrier-pigeon',
          MAIL_ATTEMPT_WORKER_CONCURRENCY: '0',
        },
        'core',
      );
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/MAIL_POSTGRES_PRIMARY_DSN: required/);
    expect(problems).toMatch(/MAIL_SMTP_TIMEOUT: "10" is not a duration; write it with a unit/);
    expect(problems).toMatch(/MAIL_API_HTTP_ADDR: "localhost" is not host:port/);
    expect(problems).toMatch(/MAIL_SMTP_MODE:/);
    expect(problems).toMatch(/MAIL_ATTEMPT_WORKER_CONCURRENCY: 0 is outside/);
    expect((error as ConfigError).problems).toHaveLength(5);
  });

  it('requires a relay address for the engine in smtp mode only', () => {
    expect(() => loadConfig(minimal, 'core')).toThrow(/MAIL_SMTP_ADDR: required when MAIL_SMTP_MODE=smtp/);
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub' }, 'core').smtp.mode).toBe('stub');
    expect(loadConfig({ ...minimal, MAIL_SMTP_ADDR: '127.0.0.1:25' }, 'core').smtp.addr).toEqual({ host: '127.0.0.1', port: 25 });
  });

  it('points the mail resolver at MAIL_DNS_SERVERS, or the system resolvers when unset', () => {
    expect(loadConfig(minimal, 'mta').dns.servers).toBeNull();
    expect(loadConfig({ ...minimal, MAIL_DNS_SERVERS: '127.0.0.1:5353,[::1]:53' }, 'mta').dns.servers).toEqual(['127.0.0.1:5353', '[::1]:53']);
    expect(() => loadConfig({ ...minimal, MAIL_DNS_SERVERS: 'resolver.example' }, 'mta')).toThrow(/MAIL_DNS_SERVERS: "resolver.example" is not an IP address/);
  });

  it('delivers directly in mx mode: no relay needed, MX hosts on port 25 unless told, never at private addresses unless allowed', () => {
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'mx' }, 'core').smtp).toMatchObject({ mode: 'mx', mxPort: 25, mxPrivateAddresses: 'refuse' });
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'mx', MAIL_MX_PRIVATE_ADDRESSES: 'allow' }, 'core').smtp.mxPrivateAddresses).toBe('allow');
    expect(() => loadConfig({ ...minimal, MAIL_MX_PRIVATE_ADDRESSES: 'yes' }, 'core')).toThrow(/MAIL_MX_PRIVATE_ADDRESSES/);
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'mx', MAIL_MX_PORT: '2525' }, 'core').smtp.mxPort).toBe(2525);
    // A direct send has the same whole-send deadline to outlast.
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'mx', MAIL_LEASE_DURATION: '1m' }, 'core')).toThrow(/MAIL_LEASE_DURATION: must be longer than the whole-send deadline/);
  });

  it("lets the engine's internal API answer its own host only unless MAIL_INTERNAL_API_CLIENTS=any", () => {
    const stub = { ...minimal, MAIL_SMTP_MODE: 'stub' };
    expect(loadConfig(stub, 'core').http.internalApiClients).toBe('loopback');
    expect(loadConfig({ ...stub, MAIL_INTERNAL_API_CLIENTS: 'any' }, 'core').http.internalApiClients).toBe('any');
    expect(() => loadConfig({ ...stub, MAIL_INTERNAL_API_CLIENTS: 'everyone' }, 'core')).toThrow(/MAIL_INTERNAL_API_CLIENTS/);
  });

  it('reads the urgent categories: authsession unless told, a list, or none; a name no command could carry is refused', () => {
    expect(loadConfig(minimal, 'api').urgentCategories).toEqual(['authsession']);
    expect(loadConfig({ ...minimal, MAIL_URGENT_CATEGORIES: ' authsession, alerts ,alerts' }, 'api').urgentCategories).toEqual(['authsession', 'alerts']);
    expect(loadConfig({ ...minimal, MAIL_URGENT_CATEGORIES: 'none' }, 'api').urgentCategories).toEqual([]);
    expect(() => loadConfig({ ...minimal, MAIL_URGENT_CATEGORIES: 'Auth Session' }, 'api')).toThrow(/MAIL_URGENT_CATEGORIES: "Auth Session" is not a category/);
  });

  it('treats empty variables as unset and parses durations, sizes and IPv6 addresses', () => {
    const config = loadConfig(
      { ...minimal, MAIL_SMTP_TIMEOUT: '1m30s', MAIL_MTA_MAX_MESSAGE_SIZE: '10MiB', MAIL_SMTP_LISTEN_ADDR: '[::1]:25', MAIL_REDIS_PASSWORD: '' },
      'mta',
    );
    expect(config.smtp.timeoutMs).toBe(90_000);
    expect(config.mta.maxMessageSize).toBe(10 * 1024 * 1024);
    expect(config.mta.listen).toEqual({ host: '::1', port: 25 });
  });

  it('parses the edge memory budget as a size and wants a maximum-size message to fit in it', () => {
    expect(loadConfig({ ...minimal, MAIL_MTA_DATA_MEMORY_BUDGET: '1GiB' }, 'mta').mta.dataMemoryBudget).toBe(1024 ** 3);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_DATA_MEMORY_BUDGET: '10MiB' }, 'mta')).toThrow(
      /MAIL_MTA_DATA_MEMORY_BUDGET: must be at least MAIL_MTA_MAX_MESSAGE_SIZE/,
    );
    expect(() => loadConfig({ ...minimal, MAIL_MTA_DATA_MEMORY_BUDGET: 'lots' }, 'mta')).toThrow(/MAIL_MTA_DATA_MEMORY_BUDGET: "lots" is not a size/);
    // Only the edge holds DATA; the other apps do not fail on the edge's sizes.
    expect(loadConfig({ ...minimal, MAIL_MTA_DATA_MEMORY_BUDGET: '10MiB', MAIL_SMTP_MODE: 'stub' }, 'core').smtp.mode).toBe('stub');
  });

  it('parses the header size cap as a size, at most the message size', () => {
    expect(loadConfig({ ...minimal, MAIL_MTA_MAX_HEADER_SIZE: '100KiB' }, 'mta').mta.maxHeaderSize).toBe(100 * 1024);
    // Never more than the message: the message's cap comes first, and is not a configuration error.
    expect(loadConfig({ ...minimal, MAIL_MTA_MAX_HEADER_SIZE: '30MiB' }, 'mta').mta.maxHeaderSize).toBe(25 * 1024 * 1024);
    expect(loadConfig({ ...minimal, MAIL_MTA_MAX_MESSAGE_SIZE: '64KiB' }, 'mta').mta.maxHeaderSize).toBe(64 * 1024);
  });

  it('derives the whole-send deadline and wants the lease to outlast it by a tenth (smtp mode)', () => {
    const relay = { ...minimal, MAIL_SMTP_ADDR: '127.0.0.1:25' };
    const defaults = loadConfig(relay, 'core');
    expect(defaults.smtp.sendDeadlineMs).toBe(10 * 30_000);
    expect(defaults.engine.leaseDurationMs).toBeGreaterThan(defaults.smtp.sendDeadlineMs * 1.1);
    expect(loadConfig({ ...relay, MAIL_SMTP_SEND_DEADLINE: '45s', MAIL_LEASE_DURATION: '1m' }, 'core').smtp.sendDeadlineMs).toBe(45_000);
    expect(() => loadConfig({ ...relay, MAIL_SMTP_TIMEOUT: '10s', MAIL_LEASE_DURATION: '110s', MAIL_WATCHDOG_STALL_THRESHOLD: '20s' }, 'core')).toThrow(
      /MAIL_LEASE_DURATION: must be longer than the whole-send deadline plus a tenth \(110000 ms/,
    );
    expect(() => loadConfig({ ...relay, MAIL_SMTP_SEND_DEADLINE: '10s' }, 'core')).toThrow(/MAIL_SMTP_SEND_DEADLINE: must be at least MAIL_SMTP_TIMEOUT/);
    expect(() => loadConfig({ ...relay, MAIL_WATCHDOG_STALL_THRESHOLD: '30s' }, 'core')).toThrow(/MAIL_WATCHDOG_STALL_THRESHOLD: must be longer than MAIL_SMTP_TIMEOUT/);
    // Stub mode sends nothing: no whole-send deadline to outlast.
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_LEASE_DURATION: '1m' }, 'core').engine.leaseDurationMs).toBe(60_000);
  });

  it('reads the edge defences with their defaults and checks how they relate', () => {
    const { mta } = loadConfig(minimal, 'mta');
    expect(mta).toMatchObject({
      maxRcptCommands: 200,
      greetingDelayMs: 0,
      softErrorLimit: 10,
      errorSleepMs: 1_000,
      hardErrorLimit: 20,
      clientLookupConcurrency: 4,
      maxHops: 50,
      duplicateWindowMs: 2 * 3_600_000,
    });
    // Unset, the RCPT command cap follows the recipient limit, so raising one never breaks the start.
    expect(loadConfig({ ...minimal, MAIL_MTA_MAX_RECIPIENTS: '1000' }, 'mta').mta.maxRcptCommands).toBe(2_000);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_MAX_RCPT_COMMANDS: '50' }, 'mta')).toThrow(/MAIL_MTA_MAX_RCPT_COMMANDS: must be at least/);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_SOFT_ERROR_LIMIT: '20' }, 'mta')).toThrow(/MAIL_MTA_HARD_ERROR_LIMIT: must be larger/);
  });

  it('names MAIL_ variables it does not know, likely typos', () => {
    expect(unknownMailVariables({ ...minimal, MAIL_SMTP_ADRR: 'x', HOME: '/root' })).toEqual(['MAIL_SMTP_ADRR']);
  });
  it("leaves the OpenTelemetry SDK's OTEL_ variables to the SDK", () => {
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SERVICE_NAME: 'mx-1', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' };
    expect(unknownMailVariables({ ...minimal, ...otel })).toEqual([]);
    expect(() => loadConfig({ ...minimal, ...otel, MAIL_SMTP_MODE: 'stub' }, 'core')).not.toThrow();
  });
  it('reads MAIL_REDIS_MASTER_ADDR as one server or as Sentinels naming a master', () => {
    const direct = loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis.internal:6379' }, 'core');
    expect(direct.redis?.endpoint).toEqual({ kind: 'direct', addr: { host: 'redis.internal', port: 6379 }, tls: false });
    const overTls = loadConfig(
      { ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'rediss://redis.internal:6380', MAIL_REDIS_USERNAME: 'postern-engine', MAIL_REDIS_TLS_CA: '/etc/ca.pem' },
      'core',
    );
    expect(overTls.redis).toMatchObject({ endpoint: { kind: 'direct', addr: { host: 'redis.internal', port: 6380 }, tls: true }, username: 'postern-engine', tlsCaFile: '/etc/ca.pem' });
    // The credentials have variables of their own, and a CA file needs TLS.
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'rediss://u:hunter2@redis.internal:6380' }, 'core')).toThrow(/holds credentials: give them in MAIL_REDIS_USERNAME/);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis.internal:6379', MAIL_REDIS_TLS_CA: '/etc/ca.pem' }, 'core')).toThrow(/MAIL_REDIS_TLS_CA: set without a rediss:\/\//);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_USERNAME: 'postern-engine' }, 'core')).toThrow(/MAIL_REDIS_USERNAME: set without MAIL_REDIS_MASTER_ADDR/);
    const sentinel = loadConfig(
      { ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'sentinel://10.0.0.1:26379,[::1]:26380/postern', MAIL_REDIS_SENTINEL_PASSWORD: 's3' },
      'core',
    );
    expect(sentinel.redis).toMatchObject({
      endpoint: { kind: 'sentinel', masterName: 'postern', sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }] },
      sentinelPassword: 's3',
    });
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'sentinel://10.0.0.1:26379' }, 'core')).toThrow(/sentinel:\/\/host:port/);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'sentinel://10.0.0.1/postern' }, 'core')).toThrow(/sentinel "10.0.0.1" is not host:port/);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'r:6379', MAIL_REDIS_SENTINEL_PASSWORD: 'x' }, 'core')).toThrow(/MAIL_REDIS_SENTINEL_PASSWORD/);
  });

  it('refuses a duration longer than a timer can wait: Node fires such a timer at once (MAIL_SHUTDOWN_TIMEOUT=1000h forced the exit on the first SIGTERM)', () => {
    const problemsOf = (extra: Record<string, string>): string => {
      try {
        loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', ...extra }, 'core');
        return '';
      } catch (error) {
        return (error as Error).message;
      }
    };
    for (const name of ['MAIL_SHUTDOWN_TIMEOUT', 'MAIL_HEARTBEAT_INTERVAL', 'MAIL_SCHEDULER_POLL_INTERVAL', 'MAIL_MTA_DATA_TIMEOUT', 'MAIL_SMTP_TIMEOUT', 'MAIL_POSTGRES_STATEMENT_TIMEOUT']) {
      expect(problemsOf({ [name]: '1000h' })).toMatch(new RegExp(`${name}: "1000h" is longer than 500h`));
    }
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_SHUTDOWN_TIMEOUT: '500h' }, 'core').engine.shutdownTimeoutMs).toBe(500 * 3_600_000);
    // Windows compared in SQL only, never waited on by a timer, keep their longer range (720h by default).
    const windows = loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_RETENTION_AGE: '8760h', MAIL_IDEMPOTENCY_WINDOW: '8760h' }, 'core');
    expect(windows.engine.retentionAgeMs).toBe(8760 * 3_600_000);
    expect(windows.engine.idempotencyWindowMs).toBe(8760 * 3_600_000);
  });

  it('reads the queue lifetime: 120h by default, longer than the default ladder; at most 500h', () => {
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub' }, 'core').engine.queueLifetimeMs).toBe(120 * 3_600_000);
    expect(loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_QUEUE_LIFETIME: '30m' }, 'core').engine.queueLifetimeMs).toBe(1_800_000);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_QUEUE_LIFETIME: '501h' }, 'core')).toThrow(/MAIL_QUEUE_LIFETIME/);
  });

  it('refuses 0 for a wait whose 0 would switch its bound off or spin a loop, and keeps 0 where it is documented', () => {
    const refused = (name: string) => () => loadConfig({ ...minimal, MAIL_SMTP_MODE: 'stub', [name]: '0s' }, 'core');
    for (const name of [
      'MAIL_POSTGRES_CONNECT_TIMEOUT',
      'MAIL_POSTGRES_STATEMENT_TIMEOUT',
      'MAIL_SMTP_TIMEOUT',
      'MAIL_SCHEDULER_POLL_INTERVAL',
      'MAIL_HEARTBEAT_INTERVAL',
      'MAIL_MTA_IDLE_TIMEOUT',
      'MAIL_MTA_DATA_TIMEOUT',
      'MAIL_MTA_LOOKUP_TIMEOUT',
      'MAIL_SHAPING_DEFER',
      // 0 would end every delivery at its first wait; "for ever" is what the lifetime ends.
      'MAIL_QUEUE_LIFETIME',
    ]) {
      expect(refused(name), name).toThrow(new RegExp(`${name}: "0s" must be more than 0`));
    }
    const zeros = loadConfig(
      { ...minimal, MAIL_SMTP_MODE: 'stub', MAIL_MTA_GREETING_DELAY: '0s', MAIL_MTA_TLS_RELOAD_INTERVAL: '0s', MAIL_MTA_ERROR_SLEEP: '0s', MAIL_SHUTDOWN_TIMEOUT: '0s' },
      'core',
    );
    expect([zeros.mta.greetingDelayMs, zeros.engine.shutdownTimeoutMs, zeros.mta.errorSleepMs]).toEqual([0, 0, 0]);
  });

  it('never repeats the credentials of an address written as a URL in its refusal (stderr ends up in the logs)', () => {
    const problemsOf = (extra: Record<string, string>, app: 'core' | 'mta' = 'core'): string => {
      try {
        loadConfig({ ...minimal, ...extra }, app);
        return '';
      } catch (error) {
        return (error as Error).message;
      }
    };
    const cases: Record<string, string>[] = [
      { MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis://:hunter2-redis@redis.internal:6379' },
      { MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis://default:hunter2-redis@redis.internal:6379/0' },
      { MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'sentinel://admin:hunter2-redis@10.0.0.1:26379/postern' },
      { MAIL_SMTP_ADDR: 'smtp://relay-user:hunter2-relay@relay.example.net:587' },
      { MAIL_SMTP_ADDR: 'relay-user:hunter2-relay@relay.example.net:587' },
      // A password holding ':' or an unencoded '@': masked through the last '@', not the first.
      { MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis://default:hunter2:x@redis.internal:6379' },
      { MAIL_SMTP_MODE: 'stub', MAIL_REDIS_MASTER_ADDR: 'redis://default:x@hunter2@redis.internal:6379' },
    ];
    for (const extra of cases) {
      const message = problemsOf(extra);
      expect(message, JSON.stringify(extra)).toMatch(/is not (host:port|sentinel)/);
      expect(message).not.toMatch(/hunter2/);
      expect(message).toMatch(/\*\*\*@/);
    }
  });

  it('refuses a DSN node-postgres cannot read at boot, by name and without its password', () => {
    for (const dsn of ['postgres://u:hunter2@[::1/db', 'postgres://u:hunter2@db:99999/postern']) {
      let message = '';
      try {
        loadConfig({ ...minimal, MAIL_POSTGRES_PRIMARY_DSN: dsn }, 'api');
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message, dsn).toMatch(/MAIL_POSTGRES_PRIMARY_DSN.*is not a URL PostgreSQL's client can read/);
      expect(message).not.toMatch(/hunter2/);
    }
    expect(loadConfig({ ...minimal, MAIL_POSTGRES_PRIMARY_DSN: 'postgres:///postern?host=/var/run/postgresql' }, 'api')).toBeDefined();
  });

  it('refuses what node-postgres would not do: several hosts, or a session that asks for a standby', () => {
    const problem = (dsn: string) => {
      try {
        loadConfig({ ...minimal, MAIL_POSTGRES_PRIMARY_DSN: dsn }, 'api');
        return '';
      } catch (error) {
        return (error as Error).message;
      }
    };
    expect(problem('postgresql://u:hunter2@/postern?host=db1,db2&port=5432,5432&target_session_attrs=read-write')).toMatch(
      /MAIL_POSTGRES_PRIMARY_DSN: names several hosts \(db1,db2\): PostgreSQL's Node.js client connects to one/,
    );
    for (const attrs of ['read-only', 'standby', 'prefer-standby']) {
      expect(problem(`postgres://u@db:5432/postern?target_session_attrs=${attrs}`)).toMatch(
        new RegExp(`asks for target_session_attrs=${attrs}: Postern reads and writes the primary only`),
      );
    }
    // What Postern does anyway: the primary only.
    for (const attrs of ['any', 'read-write', 'primary']) expect(problem(`postgres://u@db:5432/postern?target_session_attrs=${attrs}`)).toBe('');
    expect(problem('postgresql://u:hunter2@/postern?host=db1,db2')).not.toMatch(/hunter2/);
  });

  it('masks a DSN for a log line through its last "@", whatever its password holds (npm start logs the one it uses)', () => {
    expect(withoutCredentials('postgres://postern:pa:ss@127.0.0.1:5432/postern')).toBe('postgres://***@127.0.0.1:5432/postern');
    expect(withoutCredentials('postgres://u:p@ss@db:5432/x')).toBe('postgres://***@db:5432/x');
    expect(withoutCredentials('postgres://db:5432/x')).toBe('postgres://db:5432/x');
  });

  it('runs the edge in one process unless MAIL_MTA_PROCESSES asks for more, or for "auto"', () => {
    expect(loadConfig(minimal, 'mta').mta.processes).toBe(1);
    expect(loadConfig({ ...minimal, MAIL_MTA_PROCESSES: '4' }, 'mta').mta.processes).toBe(4);
    expect(loadConfig({ ...minimal, MAIL_MTA_PROCESSES: ' auto ' }, 'mta').mta.processes).toBe(os.availableParallelism());
    expect(loadConfig({ ...minimal, MAIL_MTA_PROCESSES: 'AUTO' }, 'mta').mta.processes).toBe(os.availableParallelism());
    expect(() => loadConfig({ ...minimal, MAIL_MTA_PROCESSES: '0' }, 'mta')).toThrow(/MAIL_MTA_PROCESSES: 0 is outside 1\.\.256/);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_PROCESSES: '-2' }, 'mta')).toThrow(/MAIL_MTA_PROCESSES: "-2" is neither a whole number of processes nor "auto"/);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_PROCESSES: '1.5' }, 'mta')).toThrow(/MAIL_MTA_PROCESSES: "1.5" is neither/);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_PROCESSES: 'all' }, 'mta')).toThrow(/MAIL_MTA_PROCESSES: "all" is neither/);
    expect(() => loadConfig({ ...minimal, MAIL_MTA_PROCESSES: '257' }, 'mta')).toThrow(/MAIL_MTA_PROCESSES: 257 is outside/);
    // "auto" never asks for more than the limit, nor for none.
    expect(parseProcessCount('auto', 512)).toEqual({ ok: true, value: 256 });
    expect(parseProcessCount('auto', 0)).toEqual({ ok: true, value: 1 });
  });
});
