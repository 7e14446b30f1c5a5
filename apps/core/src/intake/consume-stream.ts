// The Redis Stream intake (no-health-endpoints, docs/incidents.md): XREADGROUP through a script that
// measures each entry in Redis first (stream-read.ts: an entry too large to be a command is
// quarantined as too_large from its first bytes, never read whole), MAIL_STREAM_CONCURRENCY commands
// at a time through the stream's adapter (stream-command.ts: decode) and the one intake shared with the
// API (intakeCommand: check -> accept, or quarantine), XACK only after PostgreSQL committed. Nothing is
// dropped silently and no entry can block the stream (silent-encoding-change, docs/incidents.md): whatever cannot be accepted is
// quarantined with a failure code, counted, and acknowledged. A command whose acceptance keeps
// failing for another reason than the database being away or busy is quarantined as handling_failed
// after a few deliveries, counted by Redis (handling-failures.ts); an outage or a lock held for minutes
// is waited out, the entry left pending. Every field is made storable in the quarantine row
// (quarantine.ts), and if even that insert fails for another reason than these, the entry is acknowledged anyway, logged with its
// id and counted (mail_poison_items_total{loop="stream"}): the stream is never blocked.
//  - Entries left pending by a consumer that died are taken over with XAUTOCLAIM once idle longer
//    than MAIL_STREAM_RECLAIM_IDLE (longer than the slowest handling of one entry).
//  - After a restart (of this loop), this consumer first re-reads its own pending entries (id 0).
//  - With nothing new to read, the loop waits for Redis to tell it of new entries
//    (stream-doorbell.ts), at most blockMs, then reads again.
//  - Redis restarted without persistence answers NOGROUP: the group is created again, from the
//    start of whatever the stream now holds, and intake carries on. A group destroyed while the
//    stream kept its entries (XGROUP DESTROY) is created again after the last entry this engine
//    handled, when that entry is still there: from the start, every command the stream still
//    holds would be handled twice — its malformed ones quarantined again, and those older than
//    MAIL_IDEMPOTENCY_WINDOW, whose keys were purged, sent again.
//  - Entries removed from the stream (XTRIM, MAXLEN, XDEL) before any engine handled them are
//    lost to Redis; they are reported, never passed over in silence: those a consumer had read
//    (pending, shown with no fields or in XAUTOCLAIM's deleted ids) one by one with their ids,
//    those the group never read by Redis's count of them (the group's lag once it has read up to
//    the stream's last entry). Both in mail_stream_entries_lost_total{how}.
//  - Entries every group has acknowledged are removed from the stream, about once a second while
//    entries are handled (stream-trim.ts): nothing else removes them, and at maxmemory with
//    noeviction Redis refuses producers' XADDs (their MAXLEN with them), so a stream that filled
//    Redis stayed full of handled entries and producers were refused for good. For the same
//    moment, a group that exists is never created again: Redis refuses XGROUP CREATE at maxmemory
//    before it looks for the group, and an engine started then never read.
// Each entry is handled in a `stream command` span that continues the producer's trace (the
// entry's `traceparent` field), and the delivery stores that span's context: its claims and
// attempts are the same trace (docs/observability.md).
import { type Span, SpanKind } from '@opentelemetry/api';
import {
  ATTR,
  type CommandOrigin,
  childLogger,
  contextOf,
  type DeliveryCommand,
  decodeFailure,
  type IntakeOutcome,
  inSpan,
  intakeCommand,
  isRetryableDbError,
  type Logger,
  MAX_COMMAND_BYTES,
  oversizedCommand,
  type Pool,
  QuarantineFailed,
  type RedisConnections,
  refuseCommand,
  type TemplateCatalog,
  traceparentOf,
} from '@postern/shared';
import type { LoopContext } from '../keepalive/supervisor.ts';
import type { EngineMetrics } from '../metrics.ts';
import { decodeEntryFields } from './entry-fields.ts';
import { decideHandling } from './handling-failures.ts';
import { recordOf } from './redis-record.ts';
import { isAclRefusal } from './script-refusal.ts';
import { decodeStreamEntry, type StreamCommand } from './stream-command.ts';
import { createStreamDoorbell } from './stream-doorbell.ts';
import { createStreamFacts, readConsumerGroups } from './stream-facts.ts';
import { createStreamReader, KEPT_BYTES, KEPT_FIELDS, MAX_ENTRY_FIELDS, type ReadEntry } from './stream-read.ts';
import { createStreamTrimmer } from './stream-trim.ts';

export const COMMAND_STREAM = 'mail:delivery_commands';

/** Deliveries of one command (Redis's count) after which a failure that is neither bad data nor the
 *  database away or busy quarantines it as handling_failed: the loop restarts between them with its backoff
 *  (0.25, 0.5, 1, 2 s), so a blip of a few seconds is ridden out. */
export const MAX_HANDLING_FAILURES = 5;

/** The shortest time between two removals of handled entries from the stream (stream-trim.ts): at
 *  maxmemory, producers write again about this long after the engines handled what filled Redis. */
export const TRIM_INTERVAL_MS = 1_000;

export interface StreamConsumerOptions {
  redis: RedisConnections;
  pool: Pool;
  catalog: TemplateCatalog;
  group: string;
  consumer: string;
  sender: string;
  /** MAIL_URGENT_CATEGORIES: claimed before the rest. */
  urgentCategories: readonly string[];
  reclaimIdleMs: number;
  /** The longest wait for new entries before reading again (stream-doorbell.ts). */
  blockMs: number;
  batchSize: number;
  /** Entries of one read handled at once (MAIL_STREAM_CONCURRENCY), each its own transaction. */
  concurrency: number;
  /** Default MAX_HANDLING_FAILURES. */
  maxHandlingFailures?: number;
  metrics: EngineMetrics;
  logger: Logger;
}

/** The group is gone (the script's error keeps Redis's NOGROUP at its start). */
function isNoGroup(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOGROUP');
}

/** Redis refused a command to the engine's ACL user (a script's refusal names its commands:
 *  script-refusal.ts). What to grant is added, so that the loop's restart line and /readyz say both. */
function withAclHint(error: unknown): unknown {
  if (!isAclRefusal(error)) return error;
  return new Error(`${error.message}: grant the engine's Redis user the ACL in docs/deploy.md, "A Redis user for the engines"`, { cause: error });
}

/** Stream entry ids ("<ms>-<seq>") in the stream's order. */
function compareEntryIds(a: string, b: string): number {
  const [aMs = 0n, aSeq = 0n] = a.split('-').map(BigInt);
  const [bMs = 0n, bSeq = 0n] = b.split('-').map(BigInt);
  return aMs !== bMs ? (aMs < bMs ? -1 : 1) : aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

/** Creates the group if it does not exist, reading from `after` (default: the start); true if it was created. */
export async function ensureGroup(options: Pick<StreamConsumerOptions, 'redis' | 'group' | 'logger'>, after = '0'): Promise<boolean> {
  try {
    // From 0, not $: entries a producer added before the group existed (Redis restarted empty,
    // a producer XADDed first) are read too. Duplicates are stopped by the idempotency keys.
    await options.redis.commands.xgroup('CREATE', COMMAND_STREAM, options.group, after, 'MKSTREAM');
    options.logger.info({ stream: COMMAND_STREAM, group: options.group, after }, 'consumer group created');
    return true;
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('BUSYGROUP')) return false;
    // At maxmemory with noeviction Redis refuses XGROUP CREATE (a command that may take memory)
    // before it looks whether the group exists: an engine started then, or whose loop restarted,
    // never read again, however much the stream held. The group being there is all it needs.
    if (error instanceof Error && error.message.startsWith('OOM') && (await groupExists(options.redis, options.group))) return false;
    throw error;
  }
}

/** Whether the stream has the group (XINFO reads: Redis answers them at maxmemory too). */
async function groupExists(redis: RedisConnections, group: string): Promise<boolean> {
  return (await readConsumerGroups(redis.commands, COMMAND_STREAM)).some((info) => info.name === group);
}

export function createStreamConsumer(options: StreamConsumerOptions): { body: (context: LoopContext) => Promise<void> } {
  const { redis, group, consumer, metrics } = options;
  const log = childLogger(options.logger, { component: 'stream', consumer });
  const maxHandlingFailures = options.maxHandlingFailures ?? MAX_HANDLING_FAILURES;
  /** The highest entry id this engine handled (acknowledged), across restarts of the loop, with
   *  every entry before it in its reads handled too. */
  let lastHandled: string | null = null;
  /** Entries handled past a gap (a failed or unstarted entry of their read, still pending): after
   *  lastHandled, so a group created again reads them once more. They are only acknowledged then:
   *  handled again, a malformed one would be quarantined twice. Forgotten once lastHandled passes them. */
  const handledPastGap = new Set<string>();
  /** Redis's count of entries removed before the group read them, as last reported here. */
  let removedUnreadReported = 0;
  /** Entries being handled, by any instance of this loop: one the watchdog abandoned may still be
   *  finishing entries its successor reads again among the consumer's pending ones. */
  const inFlight = new Map<string, Promise<unknown>>();
  /** Entries were handled since the stream was last trimmed of them; true at first, for what engines
   *  before this one acknowledged and left in the stream. */
  let trimDue = true;
  let nextTrim = 0;
  /** Whether the last trim failed: logged once per change. */
  let trimFailing = false;

  /** Redis's own count of how often the entry was delivered (handling-failures.ts). */
  async function timesDelivered(id: string): Promise<number> {
    const reply = (await redis.commands.xpending(COMMAND_STREAM, group, id, id, 1)) as Array<[string, string, number, number]>;
    return Number(reply[0]?.[3] ?? 1);
  }

  /** The one intake; a failure to accept that is not a refusal is retried (thrown: the entry stays
   *  pending and the restarted loop reads it again first) or quarantined as handling_failed. */
  async function submit(id: string, command: DeliveryCommand, origin: CommandOrigin): Promise<IntakeOutcome> {
    try {
      return await intakeCommand(options.pool, command, origin, { catalog: options.catalog, sender: options.sender, urgentCategories: options.urgentCategories });
    } catch (error) {
      if (error instanceof QuarantineFailed) throw error;
      const delivered = await timesDelivered(id);
      const decision = decideHandling(error, delivered, maxHandlingFailures);
      if (decision.action === 'retry') {
        log.warn({ err: error, entryId: id, timesDelivered: delivered }, 'accepting a stream command failed; it stays pending');
        throw error;
      }
      metrics.poisonItems.inc({ loop: 'stream', reason: decision.code });
      return refuseCommand(options.pool, decodeFailure(decision.code, decision.detail, command), origin);
    }
  }

  /** An entry the script measured and did not send (stream-read.ts): refused from its first bytes. */
  function handleTooLarge(entry: Extract<ReadEntry, { kind: 'too_large' }>): Promise<void> {
    const { fields } = decodeEntryFields(entry.kept);
    const raw = JSON.stringify(fields);
    const why = entry.bytes > MAX_COMMAND_BYTES ? `larger than ${MAX_COMMAND_BYTES} bytes` : `more than ${MAX_ENTRY_FIELDS} fields`;
    const detail =
      `command of ${entry.bytes} bytes in ${entry.fieldCount} fields, ${why}: not read by the engine ` +
      `(the raw copy holds its first ${KEPT_FIELDS} fields, each cut to ${KEPT_BYTES} bytes)`;
    return handleEntry(entry.id, { raw, decoded: oversizedCommand(fields, detail) });
  }

  function handleEntry(id: string, { raw, decoded }: StreamCommand): Promise<void> {
    const attributes = { 'messaging.system': 'redis', 'messaging.destination.name': COMMAND_STREAM, 'messaging.message.id': id };
    return inSpan(
      'stream command',
      { kind: SpanKind.CONSUMER, attributes },
      (span) => handleDecoded(id, raw, decoded, span),
      contextOf(decoded.ok ? decoded.command.traceparent : null),
    );
  }

  async function handleDecoded(id: string, raw: string, decoded: StreamCommand['decoded'], span: Span): Promise<void> {
    const origin: CommandOrigin = { channel: 'stream', streamEntryId: id, raw };
    try {
      let outcome: IntakeOutcome;
      if (decoded.ok) {
        // The delivery continues this span (the producer's trace, one level down) when it is recorded.
        const command = span.isRecording() ? { ...decoded.command, traceparent: traceparentOf(span) } : decoded.command;
        span.setAttribute(ATTR.source, command.source);
        outcome = await submit(id, command, origin);
      } else outcome = await refuseCommand(options.pool, decoded.failure, origin);
      span.setAttribute(ATTR.outcome, outcome.status);
      if (outcome.status !== 'refused') span.setAttribute(ATTR.deliveryId, outcome.deliveryId);
      if (outcome.status === 'refused') {
        const { failure } = outcome;
        span.setAttribute('postern.failure_code', failure.code);
        metrics.malformed.inc({ failure_code: failure.code });
        log.warn({ entryId: id, failureCode: failure.code, detail: failure.detail, source: failure.source }, 'stream command rejected');
      } else if (decoded.ok) {
        metrics.commandsAccepted.inc({ schema_version: decoded.command.schemaVersion, outcome: outcome.status });
      }
    } catch (error) {
      if (!(error instanceof QuarantineFailed)) throw error;
      // An outage, a deadlock or a timeout is waited out (the entry stays pending), as for the
      // acceptance itself (handling-failures.ts). Anything else would fail the same way on every
      // read and block the stream behind it: the entry is acknowledged anyway, and trimmed from the
      // stream with the handled ones (stream-trim.ts); this log line is its record.
      if (isRetryableDbError(error.cause)) throw error.cause;
      metrics.poisonItems.inc({ loop: 'stream', reason: 'quarantine_failed' });
      log.error(
        { err: error.cause, entryId: id, failureCode: error.failure.code, detail: error.failure.detail },
        'quarantining a stream command failed; acknowledged anyway so that the stream flows',
      );
    }
    // Only now, with the delivery or the quarantine row committed.
    await redis.commands.xack(COMMAND_STREAM, group, id);
  }

  /** An entry the group delivered to a consumer and that was removed from the stream (XDEL,
   *  trimmed) before anyone handled it: its command is gone. */
  function reportRemovedPending(id: string): void {
    metrics.streamEntriesLost.inc({ how: 'removed_pending' });
    log.error({ entryId: id }, 'stream entry removed from the stream before it was handled: its command is lost');
  }

  function handled(id: string): void {
    trimDue = true;
    if (lastHandled !== null && compareEntryIds(id, lastHandled) <= 0) return;
    lastHandled = id;
    for (const past of handledPastGap) if (compareEntryIds(past, id) <= 0) handledPastGap.delete(past);
  }

  /** A read entry with its command decoded (an entry with fields), before any of its read is handled. */
  interface ReadyEntry {
    entry: ReadEntry;
    command: StreamCommand | null;
  }

  function ready(entry: ReadEntry): ReadyEntry {
    return { entry, command: entry.kind === 'entry' ? decodeStreamEntry(entry.fields) : null };
  }

  function handleOne({ entry, command }: ReadyEntry): Promise<unknown> {
    // Read again from a group created again after lastHandled (recreateGroup): its command is committed.
    if (handledPastGap.has(entry.id)) return redis.commands.xack(COMMAND_STREAM, group, entry.id);
    // A removed entry still pending shows up with no fields: nothing to accept.
    if (entry.kind === 'removed') {
      reportRemovedPending(entry.id);
      return redis.commands.xack(COMMAND_STREAM, group, entry.id);
    }
    if (entry.kind === 'too_large') return handleTooLarge(entry);
    return handleEntry(entry.id, command ?? decodeStreamEntry(entry.fields));
  }

  /** An entry handled once by this engine's instances of the loop: an abandoned instance still
   *  handling it (stuck on the database, which is why it was abandoned) is waited for, and what it
   *  finished is not handled again — a malformed entry would be quarantined twice. */
  async function handleOnce(item: ReadyEntry): Promise<unknown> {
    const { id } = item.entry;
    const running = inFlight.get(id);
    if (running && (await running.then(() => true, () => false))) return;
    const handling = handleOne(item);
    inFlight.set(id, handling);
    try {
      return await handling;
    } finally {
      if (inFlight.get(id) === handling) inFlight.delete(id);
    }
  }

  /** What two commands of one read must not race on: the same idempotency key of one producer (the
   *  first in the stream is the one created, a later one its duplicate or conflict), or the same
   *  chosen delivery id. */
  function orderingKeys({ command }: ReadyEntry): string[] {
    if (!command?.decoded.ok) return [];
    const { source, idempotencyKey, deliveryId } = command.decoded.command;
    return [`key\u0000${source}\u0000${idempotencyKey}`, ...(deliveryId ? [`id\u0000${deliveryId}`] : [])];
  }

  /**
   * The entries of one read, up to `concurrency` at once: each is its own transaction on its own
   * connection, so their round trips and WAL flushes overlap (one at a time, a command waited for
   * its five statements and its commit alone: about 600 a second). Commands on the same key or
   * delivery id still go one after the other, in the stream's order (orderingKeys). After the
   * first failure no entry is started; those running finish, then it is thrown (the failed and the
   * unstarted stay pending, and the restarted loop reads them first). The last entry handled, for
   * a group created again, is the end of the handled run from the read's start: an entry handled
   * past a gap is read once more then, a duplicate.
   */
  async function handleAll(entries: readonly ReadEntry[], context: LoopContext): Promise<void> {
    const items = entries.map(ready);
    const done: boolean[] = items.map(() => false);
    /** The handling of the last entry started for each ordering key. */
    const lastOn = new Map<string, Promise<unknown>>();
    let started = 0;
    let handledRun = 0;
    let failure: { error: unknown } | null = null;
    const lane = async (): Promise<void> => {
      while (failure === null && !context.abandoned.aborted && started < items.length) {
        const index = started++;
        const item = items[index] as ReadyEntry;
        const keys = orderingKeys(item);
        const before = keys.flatMap((key) => lastOn.get(key) ?? []);
        const handling = Promise.allSettled(before).then(() => {
          if (failure !== null) return Promise.reject(failure.error);
          // Abandoned by the watchdog: its successor reads the unstarted entries again.
          if (context.abandoned.aborted) return Promise.reject(context.abandoned.reason);
          return handleOnce(item);
        });
        for (const key of keys) lastOn.set(key, handling);
        try {
          await handling;
        } catch (error) {
          failure ??= { error };
          return;
        }
        done[index] = true;
        while (handledRun < items.length && done[handledRun]) handled((items[handledRun++] as ReadyEntry).entry.id);
        if (index >= handledRun) handledPastGap.add(item.entry.id);
        context.beat();
        context.progress();
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency, items.length) }, lane));
    if (failure !== null) throw (failure as { error: unknown }).error;
  }

  const facts = createStreamFacts(redis.commands, COMMAND_STREAM);

  /** Entries removed from the stream before the group read them (trimmed by a producer's MAXLEN
   *  while the engines were behind or away): Redis counts them in the group's lag, which is theirs
   *  alone once the group has read up to the stream's last entry. Counted once per process: what
   *  is found first counts whole (an engine restarted counts the group's past removals again,
   *  until the group's count is reset: docs/runbook.md). */
  async function checkRemovedUnread(): Promise<void> {
    const groups = ((await redis.commands.xinfo('GROUPS', COMMAND_STREAM)) as unknown[]).map(recordOf);
    const ours = groups.find((info) => info.name === group);
    if (!ours || ours.lag === null || ours.lag === undefined) return;
    // Read after the group: an entry added meanwhile makes them differ, and the check waits.
    if (ours['last-delivered-id'] !== (await facts.lastGeneratedId())) return;
    const removed = Number(ours.lag);
    if (removed > removedUnreadReported) {
      metrics.streamEntriesLost.inc({ how: 'removed_unread' }, removed - removedUnreadReported);
      log.error(
        { removedUnread: removed, newlyFound: removed - removedUnreadReported, group },
        'stream entries were removed from the stream before this group read them: their commands are lost',
      );
    }
    removedUnreadReported = removed;
  }

  /** The group is gone (NOGROUP, or not there when the loop starts again). When the stream still
   *  holds the last entry this engine handled, it kept its history (the group was destroyed): the
   *  group is created again after that entry. Before this engine handled anything, from the start. */
  async function recreateGroup(noGroup: boolean): Promise<void> {
    const last = lastHandled;
    const kept = last !== null && (await facts.holds(last));
    if (kept) {
      if (!(await ensureGroup({ redis, group, logger: log }, last))) return;
      log.warn({ after: last }, 'consumer group was gone but the stream kept its entries: created it again after the last entry this engine handled');
    } else {
      if (!(await ensureGroup({ redis, group, logger: log }))) return;
      // Entry ids of a stream started again may repeat old ones: nothing read now was handled before.
      handledPastGap.clear();
      if (noGroup || last !== null) log.warn('consumer group was gone (Redis restarted without persistence?): created it again');
    }
    removedUnreadReported = 0;
  }

  const reader = createStreamReader(redis.commands, { stream: COMMAND_STREAM, group, consumer, count: options.batchSize });
  const trimHandled = createStreamTrimmer(redis.commands, COMMAND_STREAM);

  /** The stream trimmed of what every group acknowledged (stream-trim.ts), at most every
   *  TRIM_INTERVAL_MS. A failure (an ACL without XTRIM) does not stop intake: it is logged once
   *  and the trim tried again later; only the stream, and Redis's memory, grow meanwhile. */
  async function trimWhenDue(): Promise<void> {
    if (!trimDue || Date.now() < nextTrim) return;
    trimDue = false;
    nextTrim = Date.now() + TRIM_INTERVAL_MS;
    try {
      await trimHandled(lastHandled);
      if (trimFailing) log.info('handled entries are removed from the stream again');
      trimFailing = false;
    } catch (error) {
      trimDue = true;
      if (!trimFailing) log.warn({ err: error }, 'removing handled entries from the stream failed; intake goes on, but the stream keeps them and Redis fills');
      trimFailing = true;
    }
  }
  const doorbell = createStreamDoorbell({ commands: redis.commands, notifications: redis.notifications, stream: COMMAND_STREAM, logger: log });

  async function body(context: LoopContext): Promise<void> {
    // Not ensureGroup from the start: a loop restarted (after a failure, in its backoff) may find the
    // group destroyed meanwhile, and from 0 it would handle the stream's whole history again.
    await recreateGroup(false);
    let pendingCursor: string | null = '0';
    let nextAutoclaim = 0;
    // An instance the watchdog abandoned stops too: left running it read on beside its successor
    // for good, one more reader of this consumer's entries per stall.
    const stopping = AbortSignal.any([context.signal, context.abandoned]);
    while (!stopping.aborted) {
      context.beat();
      try {
        await trimWhenDue();
        if (pendingCursor !== null) {
          // Our own entries read before a restart of this loop and never acknowledged.
          const entries = await reader.read(pendingCursor);
          if (entries.length === 0) pendingCursor = null;
          else {
            await handleAll(entries, context);
            pendingCursor = entries[entries.length - 1]?.id ?? null;
          }
          continue;
        }
        if (Date.now() >= nextAutoclaim) {
          const { entries: claimed, removed } = await reader.claim(options.reclaimIdleMs);
          // Redis 7 takes entries removed from the stream out of the pending list itself and names them here.
          for (const id of removed) reportRemovedPending(id);
          if (claimed.length > 0 || removed.length > 0) {
            if (claimed.length > 0) log.warn({ entries: claimed.length }, 'took over stream entries left pending by another consumer');
            await handleAll(claimed, context);
            continue;
          }
          await checkRemovedUnread();
          nextAutoclaim = Date.now() + Math.max(1_000, Math.floor(options.reclaimIdleMs / 2));
        }
        doorbell.beforeRead();
        const entries = await reader.read('>');
        if (entries.length > 0) await handleAll(entries, context);
        else await doorbell.wait(options.blockMs, stopping);
      } catch (error) {
        if (!isNoGroup(error)) throw error;
        await recreateGroup(true);
        pendingCursor = null;
      }
    }
  }

  return { body: (context) => body(context).catch((error: unknown) => Promise.reject(withAclHint(error))) };
}
