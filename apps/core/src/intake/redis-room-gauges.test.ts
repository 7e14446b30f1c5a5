import type { Redis } from '@postern/shared';
import { describe, expect, it } from 'vitest';
import { readRedisRoom } from './redis-room-gauges.ts';

/** INFO memory as Redis 7.0 answers it (CRLF lines), cut to the fields around the ones read. */
const INFO_MEMORY = ['# Memory', 'used_memory:3148208', 'used_memory_human:3.00M', 'used_memory_rss:9211904', 'maxmemory:3145728', 'maxmemory_human:3.00M', 'maxmemory_policy:noeviction', ''].join('\r\n');

/** XINFO GROUPS as Redis 7.0 answers it under RESP2: a live group, one no engine reads any more,
 *  one whose lag Redis cannot tell (nil). */
const GROUPS = [
  ['name', 'postern-core', 'consumers', 2, 'pending', 0, 'last-delivered-id', '1700000000500-0', 'entries-read', 500, 'lag', 0],
  ['name', 'old-deployment', 'consumers', 1, 'pending', 3, 'last-delivered-id', '1700000000100-0', 'entries-read', 100, 'lag', 400],
  ['name', 'unknowable', 'consumers', 0, 'pending', 0, 'last-delivered-id', '0-0', 'entries-read', null, 'lag', null],
];

function fakeRedis(info: string, length: number, groups: () => Promise<unknown> = async () => GROUPS): Redis {
  return { info: async () => info, xlen: async () => length, xinfo: groups } as unknown as Redis;
}

describe('the room Redis has left for the command stream', () => {
  it('is read from INFO memory (used_memory, maxmemory, not their _human or _rss neighbours) and XLEN', async () => {
    expect(await readRedisRoom(fakeRedis(INFO_MEMORY, 133), 'mail:delivery_commands')).toEqual({
      usedBytes: 3148208,
      maxBytes: 3145728,
      streamLength: 133,
      groups: [
        { name: 'postern-core', lag: 0, lastReadMs: 1700000000500 },
        { name: 'old-deployment', lag: 400, lastReadMs: 1700000000100 },
      ],
    });
  });

  it('has no groups before the stream exists, and fails on any other XINFO error', async () => {
    const noStream = fakeRedis(INFO_MEMORY, 0, async () => Promise.reject(new Error('ERR no such key')));
    expect((await readRedisRoom(noStream, 'mail:delivery_commands')).groups).toEqual([]);
    const refused = fakeRedis(INFO_MEMORY, 0, async () => Promise.reject(new Error("NOPERM this user has no permissions to run the 'xinfo|groups' command")));
    await expect(readRedisRoom(refused, 'mail:delivery_commands')).rejects.toThrow(/NOPERM/);
  });

  it('fails rather than report a figure INFO did not give', async () => {
    await expect(readRedisRoom(fakeRedis('# Memory\r\nused_memory:1000\r\n', 0), 'mail:delivery_commands')).rejects.toThrow(/no maxmemory/);
  });
});
