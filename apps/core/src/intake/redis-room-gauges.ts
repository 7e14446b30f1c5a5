// mail_redis_used_memory_bytes, mail_redis_maxmemory_bytes and mail_stream_length: how much room
// Redis has left for the command stream. mail_stream_group_lag: per consumer group, the entries it
// has not read yet. A group no engine reads any more (a retired MAIL_REDIS_CONSUMER_GROUP) holds
// back the removal of handled entries for every group (stream-trim.ts): its lag only grows, and so
// does the stream, until Redis is full — or, without maxmemory, the machine's memory is;
// PosternStreamGroupNotReading names it long before, from the lag and
// mail_stream_group_last_read_timestamp_seconds (unread entries, none read for 15 minutes).
// At maxmemory with noeviction (docs/deploy.md) Redis refuses producers' XADDs; only they see it —
// the engines' reads, acknowledgements and trims go on — so these figures are what PosternRedisFull
// alerts on (ops/prometheus/postern-alerts.yml, docs/runbook.md#redis-full). The stream holds only what no engine has handled yet (stream-trim.ts),
// so a long stream at maxmemory is a backlog (engines away or behind) and a short one is Redis's
// memory taken by something else. Read in the background like the queue's figures
// (schedule-sampler.ts): a scrape never waits for Redis. Every engine reports the same Redis: the
// alert rules take the max.
import { exportSampledGauges, type Logger, type Redis, type Registry, type ScheduleSampler } from '@postern/shared';
import { readConsumerGroups } from './stream-facts.ts';

export interface RedisRoom {
  /** INFO memory's used_memory. */
  usedBytes: number;
  /** INFO memory's maxmemory; 0: no limit. */
  maxBytes: number;
  /** XLEN of the stream (0 when it does not exist). */
  streamLength: number;
  /** XINFO GROUPS: each group's lag (entries not yet read by it; a group whose lag Redis cannot
   *  tell, null after entries were deleted from its unread range, is left out) and when the last
   *  entry it read was added (its last-delivered-id's milliseconds; 0 before it read any). */
  groups: Array<{ name: string; lag: number; lastReadMs: number }>;
}

async function readGroupLags(redis: Redis, stream: string): Promise<RedisRoom['groups']> {
  return (await readConsumerGroups(redis, stream)).flatMap((group) =>
    typeof group.lag === 'number'
      ? [{ name: String(group.name), lag: group.lag, lastReadMs: Number(String(group['last-delivered-id']).split('-')[0]) || 0 }]
      : [],
  );
}

/** A field of INFO's "name:value" lines, as a number. */
function infoNumber(info: string, name: string): number {
  const value = new RegExp(`^${name}:(\\d+)\\r?$`, 'm').exec(info)?.[1];
  if (value === undefined) throw new Error(`INFO memory has no ${name}`);
  return Number(value);
}

export async function readRedisRoom(redis: Redis, stream: string): Promise<RedisRoom> {
  const [info, streamLength, groups] = await Promise.all([redis.info('memory'), redis.xlen(stream), readGroupLags(redis, stream)]);
  return { usedBytes: infoNumber(info, 'used_memory'), maxBytes: infoNumber(info, 'maxmemory'), streamLength, groups };
}

/** Samples Redis every intervalMs (at least 1 s) and exports the figures on `registry`. */
export function exportRedisRoomGauges(options: { registry: Registry; redis: Redis; stream: string; intervalMs: number; logger: Logger }): ScheduleSampler<RedisRoom> {
  return exportSampledGauges<RedisRoom>({
    registry: options.registry,
    read: () => readRedisRoom(options.redis, options.stream),
    intervalMs: options.intervalMs,
    logger: options.logger,
    what: 'Redis memory figures',
    gauges: [
      { name: 'mail_redis_used_memory_bytes', help: 'Memory Redis uses (INFO memory used_memory), in bytes', pick: (room) => room.usedBytes },
      { name: 'mail_redis_maxmemory_bytes', help: "Redis maxmemory, in bytes (0: no limit); at it, with noeviction, producers' XADDs are refused", pick: (room) => room.maxBytes },
      { name: 'mail_stream_length', help: 'Entries in the command stream: those no engine has handled yet, and the last one read', pick: (room) => room.streamLength },
      {
        name: 'mail_stream_group_lag',
        help: 'Entries of the command stream a consumer group has not read yet (XINFO GROUPS lag); one that stays above 0 holds back the removal of handled entries',
        labelNames: ['group'],
        pickEach: (room) => room.groups.map(({ name, lag }) => ({ labels: { group: name }, value: lag })),
      },
      {
        name: 'mail_stream_group_last_read_timestamp_seconds',
        help: 'When the last stream entry a consumer group read was added (its last-delivered-id), in seconds since the epoch; 0 before it read any',
        labelNames: ['group'],
        pickEach: (room) => room.groups.map(({ name, lastReadMs }) => ({ labels: { group: name }, value: lastReadMs / 1000 })),
      },
    ],
  });
}
