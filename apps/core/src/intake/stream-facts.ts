// Two facts about the command stream, answered in Redis so that no entry crosses to the engine.
// `XINFO STREAM` replies with the stream's first and last entries, fields and all, and `XRANGE id id`
// with the entry itself: a producer's entries may be of any size (docs/core.md, "What one read can
// cost"), and since handled entries are removed (stream-trim.ts) the first entry left is often an
// oversized one nobody has handled yet. Read directly, one of 8 MB grew an engine's peak RSS by
// 71 MiB in e2e/core/stream-oversized, where it had grown by 1 MiB. A script keeps only the id and
// the yes or no. Also the stream's consumer groups (XINFO GROUPS: no entries in its reply), read
// by the consumer and the Redis gauges alike.
import type { Redis } from '@postern/shared';
import { recordOf } from './redis-record.ts';
import { namingScriptCommands } from './script-refusal.ts';

/** Redis's answer to XINFO on a stream that does not exist. */
function isNoSuchKey(error: unknown): boolean {
  return error instanceof Error && /no such key/i.test(error.message);
}

/** XINFO GROUPS of `stream`, each group by field name; none when there is no stream. */
export async function readConsumerGroups(redis: Redis, stream: string): Promise<Array<Record<string, unknown>>> {
  try {
    return ((await redis.xinfo('GROUPS', stream)) as unknown[]).map(recordOf);
  } catch (error) {
    if (isNoSuchKey(error)) return [];
    throw error;
  }
}

// KEYS[1]: the stream. The id of the last entry ever added (Redis: "no such key" without a stream).
const LAST_GENERATED_ID = `
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return ''
`;

// KEYS[1]: the stream; ARGV[1]: an entry id. 1 when the stream holds that entry, else 0.
const HOLDS_ENTRY = `
return #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
`;

export interface StreamFacts {
  /** The id of the last entry ever added to the stream ('' when there is no stream). */
  lastGeneratedId(): Promise<string>;
  /** Whether the stream still holds the entry `id`. */
  holds(id: string): Promise<boolean>;
}

export function createStreamFacts(redis: Redis, stream: string): StreamFacts {
  // EVALSHA, and EVAL when Redis does not know the script (restarted, failed over): ioredis does both.
  redis.defineCommand('posternStreamLastGeneratedId', { numberOfKeys: 1, lua: LAST_GENERATED_ID });
  redis.defineCommand('posternStreamHoldsEntry', { numberOfKeys: 1, lua: HOLDS_ENTRY });
  const scripts = redis as unknown as {
    posternStreamLastGeneratedId(key: string): Promise<string>;
    posternStreamHoldsEntry(key: string, id: string): Promise<number>;
  };
  return {
    lastGeneratedId: async () => {
      try {
        return String(await namingScriptCommands(scripts.posternStreamLastGeneratedId(stream), "the stream's last id script", ['xinfo|stream']));
      } catch (error) {
        // The stream removed since the caller looked (it asked XINFO GROUPS first).
        if (isNoSuchKey(error)) return '';
        throw error;
      }
    },
    holds: async (id) =>
      Number(await namingScriptCommands(scripts.posternStreamHoldsEntry(stream, id), 'the stream entry check script', ['xrange'])) > 0,
  };
}
