// Removing handled entries from the command stream. Nothing else removes them: a producer's
// `XADD ... MAXLEN` trims only as it adds, and at maxmemory with maxmemory-policy noeviction (what
// docs/deploy.md asks for) Redis refuses every XADD, MAXLEN and all. A stream that had filled Redis
// therefore stayed full after the engines had handled and acknowledged every entry in it (XACK
// frees a pending-list record, not the entry): Redis's memory did not fall and producers were
// refused until an operator trimmed the stream by hand (e2e/faults/redis-maxmemory.e2e.test.ts).
//
// So each engine removes, about once a second while it handles entries, what every consumer group
// of the stream is done with: XTRIM MINID to the oldest entry some group still needs — its oldest
// pending entry (read, not yet acknowledged), or else the last entry it read, which is kept — and
// never past the last entry this engine handled, which is kept too: an engine tells a group
// destroyed from a stream started again by finding that entry (consume-stream.ts recreateGroup).
// Entries no group has read yet are never removed, nor anything while the stream has no group.
// One script, so that no read or group change falls between looking and trimming; Redis 7
// replicates its effect (the XTRIM). It runs at maxmemory: a script without a `#!lua` line is
// refused there only if its first write is a command Redis refuses at maxmemory, and XTRIM is not
// one (XADD and XGROUP CREATE are); one with `#!lua` and no `allow-oom` flag is refused whole
// (Redis 7.0, measured: docs/core.md).
import type { Redis } from '@postern/shared';
import { namingScriptCommands } from './script-refusal.ts';

// KEYS[1]: the stream; ARGV[1]: the last entry this engine handled, or ''. Replies the number of
// entries removed.
const SCRIPT = `
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return 0 end
-- a < b for entry ids "<ms>-<seq>", compared as the decimal numbers they are
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then
    if #am ~= #bm then return #am < #bm end
    return am < bm
  end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local keep = info['last-delivered-id']
  if info['pending'] > 0 then
    local oldest = redis.call('XPENDING', stream, info['name'])[2]
    if before(oldest, keep) then keep = oldest end
  end
  if floor == nil or before(keep, floor) then floor = keep end
end
if floor == nil then return 0 end
if ARGV[1] ~= '' and before(ARGV[1], floor) then floor = ARGV[1] end
if floor == '0-0' then return 0 end
return redis.call('XTRIM', stream, 'MINID', floor)
`;

type ScriptCall = (key: string, keep: string) => Promise<number>;

/** Removes the entries every group of `stream` has acknowledged, up to `keep` (an entry id) at
 *  most; resolves with how many. */
export function createStreamTrimmer(redis: Redis, stream: string): (keep: string | null) => Promise<number> {
  // EVALSHA, and EVAL when Redis does not know the script (restarted, failed over): ioredis does both.
  redis.defineCommand('posternTrimCommandStream', { numberOfKeys: 1, lua: SCRIPT });
  const script = (redis as unknown as { posternTrimCommandStream: ScriptCall }).posternTrimCommandStream.bind(redis);
  return async (keep) =>
    Number(await namingScriptCommands(script(stream, keep ?? ''), 'the trim script', ['exists', 'xinfo|groups', 'xpending', 'xtrim']));
}
