// Redis settings that quietly break what the command stream promises, read once when an engine
// starts and logged as warnings (the engine still starts: the operator may know why), as the
// PostgreSQL settings are (packages/shared/src/db/server-settings.ts). An XADD Redis acknowledged
// is the producer's only record of a command until an engine has accepted it:
//   - maxmemory-policy allkeys-*: at maxmemory Redis evicts keys, any key, the command stream
//     included — every command in it gone at once, its consumer group with it, so not even the
//     lost-commands count (PosternStreamCommandsLost) can tell. noeviction refuses producers'
//     XADDs instead (they see the error); the volatile-* policies evict only keys with a TTL,
//     which the stream has not.
//   - appendonly no: what Redis acknowledged since its last snapshot is lost when it restarts.
//   - behind Sentinel, min-replicas-to-write 0: in a failover the old master goes on acknowledging
//     XADDs after its replica left it to be promoted, until it is demoted and takes the new master's
//     data: those commands are gone, and no engine ever saw them, so nothing can count them
//     (e2e/faults/redis-sentinel-failover.e2e.test.ts lost up to 16 of 150 in a graceful failover). With
//     1, a master without a replica refuses XADDs (NOREPLICAS), which producers see and retry: the
//     window narrows (it lost 1 in one run of six); only producers' WAIT closes it.
// Managed services and ACLs often refuse CONFIG: then that is said once, and nothing is checked.
import type { Logger, Redis } from '@postern/shared';

export interface RedisTopology {
  /** MAIL_REDIS_MASTER_ADDR is sentinel://: a failover can promote a replica. */
  behindSentinel: boolean;
}

/** The problem each setting's value causes, or null when it is fine. */
const CHECKS: Record<string, (value: string, topology: RedisTopology) => string | null> = {
  'maxmemory-policy': (value) =>
    value.startsWith('allkeys-')
      ? `maxmemory-policy is ${value}: at maxmemory Redis may evict the command stream itself, and every command in it is lost without a trace; use noeviction (producers' XADDs are then refused, which they see)`
      : null,
  appendonly: (value) =>
    value === 'no' ? 'appendonly is no: commands Redis acknowledged since its last snapshot are lost when it restarts; turn appendonly on' : null,
  'min-replicas-to-write': (value, { behindSentinel }) =>
    behindSentinel && value === '0'
      ? 'min-replicas-to-write is 0 behind Sentinel: in a failover the old master acknowledges XADDs its promoted replica never receives, and they are lost without a trace when it is demoted; min-replicas-to-write 1 narrows that window, producers confirming each XADD with WAIT close it'
      : null,
};

/** The settings whose value breaks a promise, with what it breaks, from CONFIG GET's name/value pairs. */
export function redisSettingProblems(
  pairs: readonly string[],
  topology: RedisTopology = { behindSentinel: false },
): Array<{ name: string; value: string; problem: string }> {
  const problems: Array<{ name: string; value: string; problem: string }> = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = pairs[i] as string;
    const value = pairs[i + 1] as string;
    const problem = CHECKS[name]?.(value, topology) ?? null;
    if (problem !== null) problems.push({ name, value, problem });
  }
  return problems;
}

/** Reads the settings above and logs each problem as a warning; returns the problems. A Redis
 *  that refuses CONFIG is logged once, never thrown: this is a diagnosis, not a gate. */
export async function checkRedisSettings(redis: Redis, logger: Logger, topology: RedisTopology): Promise<string[]> {
  let pairs: string[];
  try {
    pairs = (await redis.call('CONFIG', 'GET', ...Object.keys(CHECKS))) as string[];
  } catch (error) {
    logger.warn(
      { err: error },
      'Redis settings could not be read (CONFIG GET refused); maxmemory-policy, appendonly and min-replicas-to-write were not checked: the command stream needs noeviction, appendonly yes and, behind Sentinel, min-replicas-to-write 1',
    );
    return [];
  }
  const problems = redisSettingProblems(pairs, topology);
  for (const { name, value, problem } of problems) logger.warn({ setting: name, value }, `Redis: ${problem}`);
  return problems.map(({ problem }) => problem);
}
