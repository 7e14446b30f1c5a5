import { describe, expect, it } from 'vitest';
import { redisSettingProblems } from './redis-settings.ts';

describe('the Redis settings the command stream needs', () => {
  it('names an eviction policy that may evict the stream, and appendonly off', () => {
    const problems = redisSettingProblems(['maxmemory-policy', 'allkeys-lru', 'appendonly', 'no']);
    expect(problems.map(({ name, value }) => `${name}=${value}`)).toEqual(['maxmemory-policy=allkeys-lru', 'appendonly=no']);
    expect(problems[0]?.problem).toMatch(/may evict the command stream itself/);
  });

  it('accepts noeviction and the volatile policies (the stream has no TTL), with appendonly on', () => {
    for (const policy of ['noeviction', 'volatile-lru', 'volatile-lfu', 'volatile-random', 'volatile-ttl']) {
      expect(redisSettingProblems(['maxmemory-policy', policy, 'appendonly', 'yes']), policy).toEqual([]);
    }
    expect(redisSettingProblems(['maxmemory-policy', 'allkeys-random'])).toHaveLength(1);
    expect(redisSettingProblems([])).toEqual([]);
  });

  it('names min-replicas-to-write 0 behind Sentinel only: a failover then loses what the old master acknowledged', () => {
    const pairs = ['appendonly', 'yes', 'min-replicas-to-write', '0'];
    const problems = redisSettingProblems(pairs, { behindSentinel: true });
    expect(problems.map(({ name, value }) => `${name}=${value}`)).toEqual(['min-replicas-to-write=0']);
    expect(problems[0]?.problem).toMatch(/old master acknowledges XADDs its promoted replica never receives/);
    expect(redisSettingProblems(pairs, { behindSentinel: false })).toEqual([]);
    expect(redisSettingProblems(['min-replicas-to-write', '1'], { behindSentinel: true })).toEqual([]);
  });
});
