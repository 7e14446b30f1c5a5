// The engine's Prometheus metrics. Names keep the runbook's (no-health-endpoints: mail.attempt_schedule.depth
// is exported as mail_attempt_schedule_depth, and so on); what the runbook lacked — loop heartbeat
// ages and restarts (dead-runner, stalled-worker) — is added under the same prefix. The queue gauges
// (depth, oldest age, due work) describe the shared queue, not this process, and the API exports
// them too: packages/shared/src/metrics/queue-gauges.ts, registered by engine.ts. What the
// engine reports as events (engine-events.ts) is counted by subscribing (countEngineEvents).
import { ATTEMPT_STATUSES, FAILURE_CODES, prometheus, type Registry } from '@postern/shared';
import type { EngineEvents } from './engine-events.ts';
import type { SupervisedLoop } from './keepalive/supervisor.ts';

/** What a delivery whose queue lifetime ran out was waiting for (mail_delivery_expired_total). */
export const EXPIRED_WAITS = ['deferred', 'signing', 'temporary'] as const;
export type ExpiredWait = (typeof EXPIRED_WAITS)[number];

export interface EngineMetrics {
  attemptOutcomes: prometheus.Counter<'status'>;
  sendDuration: prometheus.Histogram<'status'>;
  deadLetters: prometheus.Counter;
  /** Deliveries dead-lettered for outliving MAIL_QUEUE_LIFETIME, by what they last waited for. */
  expired: prometheus.Counter<'waited_for'>;
  suppressed: prometheus.Counter<'reason'>;
  malformed: prometheus.Counter<'failure_code'>;
  /** Stream entries removed from the stream before an engine handled them (intake/consume-stream.ts). */
  streamEntriesLost: prometheus.Counter<'how'>;
  commandsAccepted: prometheus.Counter<'schema_version' | 'outcome'>;
  bounces: prometheus.Counter;
  loopRestarts: prometheus.Counter<'loop'>;
  loopStalls: prometheus.Counter<'loop'>;
  leasesReclaimed: prometheus.Counter;
  claimDuration: prometheus.Histogram;
  /** Items a loop took out of the way so that the rest could go on (docs/core.md, "Poison isolation"). */
  poisonItems: prometheus.Counter<'loop' | 'reason'>;
}

export function createEngineMetrics(
  registry: Registry,
  sources: { loops: () => readonly SupervisedLoop[] },
): EngineMetrics {
  const { Counter, Gauge, Histogram } = prometheus;

  new Gauge({
    name: 'mail_loop_heartbeat_age_ms',
    help: 'Time since each supervised loop of this engine last heartbeated, in ms.',
    labelNames: ['loop'],
    registers: [registry],
    collect() {
      const now = Date.now();
      this.reset();
      for (const loop of sources.loops()) this.set({ loop: loop.name }, now - loop.status.heartbeatAt);
    },
  });

  const metrics: EngineMetrics = {
    attemptOutcomes: new Counter({ name: 'mail_attempt_outcomes_total', help: 'Delivery attempts by outcome.', labelNames: ['status'], registers: [registry] }),
    sendDuration: new Histogram({
      name: 'mail_provider_send_duration_ms',
      help: 'Time to hand one message to the relay, in ms.',
      labelNames: ['status'],
      buckets: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000],
      registers: [registry],
    }),
    deadLetters: new Counter({ name: 'mail_delivery_dead_letters_total', help: 'Deliveries dead-lettered (the retry ladder spent, or the queue lifetime over).', registers: [registry] }),
    expired: new Counter({
      name: 'mail_delivery_expired_total',
      help: 'Deliveries dead-lettered because they would wait again after MAIL_QUEUE_LIFETIME in the queue (also in mail_delivery_dead_letters_total), by what they last waited for: deferred (shaping, a backed-off relay), signing (an unusable DKIM/ARC key), temporary (a temporary failure with the ladder left).',
      labelNames: ['waited_for'],
      registers: [registry],
    }),
    suppressed: new Counter({ name: 'mail_delivery_suppressed_total', help: 'Deliveries ended as suppressed.', labelNames: ['reason'], registers: [registry] }),
    malformed: new Counter({ name: 'mail_stream_commands_malformed_total', help: 'Stream commands quarantined as malformed.', labelNames: ['failure_code'], registers: [registry] }),
    streamEntriesLost: new Counter({
      name: 'mail_stream_entries_lost_total',
      help: 'Stream entries removed from the stream (XTRIM, MAXLEN, XDEL) before an engine handled them: removed_pending (read, not handled), removed_unread (never read; Redis\'s count).',
      labelNames: ['how'],
      registers: [registry],
    }),
    commandsAccepted: new Counter({ name: 'mail_stream_commands_accepted_total', help: 'Stream commands accepted.', labelNames: ['schema_version', 'outcome'], registers: [registry] }),
    bounces: new Counter({ name: 'mail_delivery_bounces_total', help: 'Delivery status notifications queued for senders of accepted mail.', registers: [registry] }),
    // Every loop's series exists from the first scrape at 0, so an alert on increase() sees the
    // first restart or stall (a series that appears at 1 has no increase).
    loopRestarts: new Counter({
      name: 'mail_loop_restarts_total',
      help: 'Supervised loop restarts after a failure or stall.',
      labelNames: ['loop'],
      registers: [registry],
      collect() {
        for (const loop of sources.loops()) this.inc({ loop: loop.name }, 0);
      },
    }),
    loopStalls: new Counter({
      name: 'mail_loop_stalls_total',
      help: 'Loops the watchdog found stalled.',
      labelNames: ['loop'],
      registers: [registry],
      collect() {
        for (const loop of sources.loops()) this.inc({ loop: loop.name }, 0);
      },
    }),
    leasesReclaimed: new Counter({ name: 'mail_attempt_leases_reclaimed_total', help: 'Expired leases taken back (their attempt recorded as outcome_unknown).', registers: [registry] }),
    claimDuration: new Histogram({
      name: 'mail_attempt_claim_duration_ms',
      help: 'Time of one claim statement, in ms.',
      buckets: [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 25, 50, 100, 250, 1000],
      registers: [registry],
    }),
    poisonItems: new Counter({
      name: 'mail_poison_items_total',
      help: 'Items isolated so that their loop could go on (loop: completion, reclaim, stream), by why.',
      labelNames: ['loop', 'reason'],
      registers: [registry],
    }),
  };
  for (const status of ATTEMPT_STATUSES) metrics.attemptOutcomes.inc({ status }, 0);
  for (const reason of ['suppression_list', 'stub_mode', 'provider']) metrics.suppressed.inc({ reason }, 0);
  metrics.deadLetters.inc(0);
  for (const waited_for of EXPIRED_WAITS) metrics.expired.inc({ waited_for }, 0);
  // Every failure code's series exists from the start at 0 (silent-encoding-change): a series that
  // first appears already at 1 shows no increase() to Prometheus, so the very first quarantined
  // command of a kind would never fire PosternMalformedCommands.
  for (const failure_code of FAILURE_CODES) metrics.malformed.inc({ failure_code }, 0);
  for (const how of ['removed_pending', 'removed_unread']) metrics.streamEntriesLost.inc({ how }, 0);
  return metrics;
}

/** The metrics that count engine events: claims, bounces of committed batches, isolated outcomes,
 *  loop restarts and stalls. */
export function countEngineEvents(events: EngineEvents, metrics: EngineMetrics): void {
  events.on('claim', ({ durationMs }) => metrics.claimDuration.observe(durationMs));
  events.on('completion:batch', ({ bounces }) => {
    if (bounces > 0) metrics.bounces.inc(bounces);
  });
  events.on('completion:isolated', ({ reason }) => metrics.poisonItems.inc({ loop: 'completion', reason }));
  events.on('loop:restart', ({ loop }) => metrics.loopRestarts.inc({ loop }));
  events.on('loop:stall', ({ loop }) => metrics.loopStalls.inc({ loop }));
}
