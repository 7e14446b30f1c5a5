// Reading the command stream with a bound on what one read can cost the engine. Redis takes fields
// of up to 512 MiB (proto-max-bulk-len) and entries of any number of them, and no Redis setting
// bounds an entry (client-query-buffer-limit does not see large arguments), while a command over
// MAX_COMMAND_BYTES is refused anyway: an XREADGROUP ... COUNT 50 of a buggy producer's 10 MB
// entries took an engine from 179 MiB to 934 MiB, and one with a memory limit below that was
// OOM-killed, restarted, took the same entries back with XAUTOCLAIM and was killed again.
//
// So the engine never reads entries itself: this script does, in Redis, one entry at a time
// (XREADGROUP ... COUNT 1 from the group, from this consumer's history, or XAUTOCLAIM ... COUNT 1),
// and measures each: an entry whose fields total more than ENTRY_READ_LIMIT_BYTES or that has more
// than MAX_ENTRY_FIELDS fields comes back as a marker — its id, its size, its field count and
// its first KEPT_FIELDS fields cut to KEPT_BYTES each (enough for a `source` and a
// `schema_version`, and for the quarantine row's copy) — and is quarantined as too_large without
// the engine ever receiving it. A read thus costs the engine at most count * ENTRY_READ_LIMIT_BYTES
// (16 MiB at 50). The limit is a little above MAX_COMMAND_BYTES so that commands near the limit
// still go through the one decoding (decodeCommand), which measures them as decoded text.
//
// The entries are read by the same commands as before, so ids, pending entries, delivery counts and
// acknowledgements mean what they did (handling-failures.ts counts deliveries, XACK after commit).
// Redis 7 replicates a script by its effects (the XCLAIM / XGROUP SETID a read makes), so replicas
// and a failover to one see what a plain XREADGROUP would have left. BLOCK is not allowed in
// scripts: the wait for new entries is stream-doorbell.ts. The script has no `#!lua` line on
// purpose: Redis 7 refuses a script with one and without the allow-oom flag, whole, at maxmemory,
// where this one runs (XREADGROUP and XAUTOCLAIM are answered there: docs/core.md) and must, for
// the engines to drain a stream that filled Redis.
//
// Redis itself still holds each entry it measures, briefly, twice (the command's reply and the
// script's copy of it): READ_BUDGET_BYTES ends a call once that much was measured, so one call
// holds that much plus one entry at most, and does not keep Redis busy for long.
import { MAX_COMMAND_BYTES, type Redis } from '@postern/shared';
import { namingScriptCommands } from './script-refusal.ts';

export const ENTRY_READ_LIMIT_BYTES = MAX_COMMAND_BYTES + 64 * 1024;
/** A command has at most ~15 fields; an entry of a million empty fields is small in bytes but not
 *  in the engine's memory (an object per field). */
export const MAX_ENTRY_FIELDS = 256;
export const KEPT_FIELDS = 32;
export const KEPT_BYTES = 1024;
export const READ_BUDGET_BYTES = 16 * 1024 * 1024;

// KEYS[1]: the stream. ARGV: mode ("read" | "claim"), group, consumer, start (an id or ">" for
// read, a cursor for claim), count, limit bytes, limit fields, kept fields, kept bytes, budget,
// min idle ms (claim). Replies {entries} (read) or {entries, removed ids, next cursor} (claim); an
// entry is {id, fields}, {id, nil} (removed from the stream while pending), or
// {id, kept fields, bytes, field count} (too large).
const SCRIPT = `
local stream = KEYS[1]
local mode, group, consumer, start = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count, limitBytes, limitFields = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local keptFields, keptBytes, budget = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local entries, removed, measured = {}, {}, 0

local function add(entry)
  local id, fields = entry[1], entry[2]
  if not fields then
    entries[#entries + 1] = { id, false }
    return
  end
  local bytes = 0
  for i = 1, #fields do bytes = bytes + #fields[i] end
  measured = measured + bytes
  local fieldCount = #fields / 2
  if bytes <= limitBytes and fieldCount <= limitFields then
    entries[#entries + 1] = entry
    return
  end
  local kept = {}
  for i = 1, math.min(#fields, 2 * keptFields) do kept[i] = string.sub(fields[i], 1, keptBytes) end
  entries[#entries + 1] = { id, kept, bytes, fieldCount }
end

if mode == 'read' then
  local from = start
  while #entries < count and measured < budget do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, from)
    local entry = reply and reply[1][2][1]
    if not entry then break end
    add(entry)
    if from ~= '>' then from = entry[1] end
  end
  return { entries }
end

local cursor, calls = start, 0
repeat
  local reply = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[11], cursor, 'COUNT', 1)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do add(entry) end
  for _, id in ipairs(reply[3] or {}) do removed[#removed + 1] = id end
  calls = calls + 1
until cursor == '0-0' or #entries >= count or calls >= count or measured >= budget
return { entries, removed, cursor }
`;

/** One entry as the script gave it. */
export type ReadEntry =
  | { id: string; kind: 'entry'; fields: Buffer[] }
  /** Removed from the stream (XDEL, trimmed) while pending: nothing to accept. */
  | { id: string; kind: 'removed' }
  | { id: string; kind: 'too_large'; bytes: number; fieldCount: number; kept: Buffer[] };

type RawEntry = [Buffer, Buffer[] | null, number?, number?];

export interface StreamReader {
  /** New entries (`from` ">") or this consumer's own pending ones after `from` (an id). */
  read(from: string): Promise<ReadEntry[]>;
  /** XAUTOCLAIM from the start of the pending list: entries idle longer than `minIdleMs`, and the
   *  ids of those removed from the stream meanwhile (Redis 7 takes them out of the list itself). */
  claim(minIdleMs: number): Promise<{ entries: ReadEntry[]; removed: string[] }>;
}

type ScriptCall = (key: string, ...args: Array<string | number>) => Promise<unknown>;

function entryOf([id, fields, bytes, fieldCount]: RawEntry): ReadEntry {
  if (!fields) return { id: id.toString(), kind: 'removed' };
  if (bytes === undefined) return { id: id.toString(), kind: 'entry', fields };
  return { id: id.toString(), kind: 'too_large', bytes: Number(bytes), fieldCount: Number(fieldCount), kept: fields };
}

export function createStreamReader(redis: Redis, options: { stream: string; group: string; consumer: string; count: number }): StreamReader {
  // EVALSHA, and EVAL when Redis does not know the script (restarted, failed over): ioredis does both.
  redis.defineCommand('posternReadCommandStream', { numberOfKeys: 1, lua: SCRIPT });
  const script = (redis as unknown as { posternReadCommandStreamBuffer: ScriptCall }).posternReadCommandStreamBuffer.bind(redis);
  const call = (mode: 'read' | 'claim', start: string, minIdleMs = 0) =>
    namingScriptCommands(
      script(
        options.stream, mode, options.group, options.consumer, start, options.count,
        ENTRY_READ_LIMIT_BYTES, MAX_ENTRY_FIELDS, KEPT_FIELDS, KEPT_BYTES, READ_BUDGET_BYTES, minIdleMs,
      ),
      'the stream read script',
      ['xreadgroup', 'xautoclaim'],
    );
  return {
    async read(from) {
      const [entries] = (await call('read', from)) as [RawEntry[]];
      return entries.map(entryOf);
    },
    async claim(minIdleMs) {
      const [entries, removed] = (await call('claim', '0-0', minIdleMs)) as [RawEntry[], Buffer[]];
      return { entries: entries.map(entryOf), removed: removed.map(String) };
    },
  };
}
