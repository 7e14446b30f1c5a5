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
});
