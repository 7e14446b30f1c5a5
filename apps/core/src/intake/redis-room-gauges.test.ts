import type { Redis } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { readRedisRoom } from './redis-room-gauges.ts';

/** INFO memory as Redis 7.0 answers it (CRLF lines), cut to the fields around the ones read. */
const INFO_MEMORY = ['# Memory', 'used_memory:3148208', 'used_memory_human:3.00M', 'used_memory_rss:9211904', 'maxmemory:3145728', 'maxmemory_human:3.00M', 'maxmemory_policy:noeviction', ''].join('\r\n');

function fakeRedis(info: string, length: number): Redis {
  return { info: async () => info, xlen: async () => length } as unknown as Redis;
}

describe('the room Redis has left for the command stream', () => {
  it('is read from INFO memory (used_memory, maxmemory, not their _human or _rss neighbours) and XLEN', async () => {
    expect(await readRedisRoom(fakeRedis(INFO_MEMORY, 133), 'mail:delivery_commands')).toEqual({ usedBytes: 3148208, maxBytes: 3145728, streamLength: 133 });
  });

  it('fails rather than report a figure INFO did not give', async () => {
    await expect(readRedisRoom(fakeRedis('# Memory\r\nused_memory:1000\r\n', 0), 'mail:delivery_commands')).rejects.toThrow(/no maxmemory/);
  });
});
