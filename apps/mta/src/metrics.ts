// What operators watch on the edge: every RCPT outcome by reply, how long the live lookup takes,
// what was accepted (messages, bytes, deliveries) and what was refused, and why.
// With MAIL_MTA_PROCESSES > 1 the primary's /metrics sums the workers' registries (prom-client's
// aggregation, cluster/worker-metrics.ts): counters and histograms add up, and every gauge here says how it combines
// (docs/mta.md, "Processes"): amounts a process holds add up; of the STARTTLS certificate's gauges
// the worst worker's value counts (the earliest expiry, any worker refusing its files).
import { prometheus, type Registry } from '@postern/shared';

export interface EdgeMetrics {
  rcptOutcomes: prometheus.Counter<'code' | 'enhanced' | 'reason'>;
  lookupDuration: prometheus.Histogram<'outcome'>;
  acceptDuration: prometheus.Histogram<'outcome'>;
  acceptBatchSize: prometheus.Histogram;
  messagesAccepted: prometheus.Counter;
  bytesAccepted: prometheus.Counter;
  deliveriesCreated: prometheus.Counter;
  rejections: prometheus.Counter<'stage' | 'reason'>;
  connections: prometheus.Counter;
  activeConnections: prometheus.Gauge;
  dataBytesInFlight: prometheus.Gauge;
  dataMemoryBudget: prometheus.Gauge;
  duplicatesAnswered: prometheus.Counter;
  errorLimitDelays: prometheus.Counter;
  errorLimitDisconnects: prometheus.Counter;
  earlyTalkers: prometheus.Counter;
  commandLineTimeouts: prometheus.Counter;
  acceptsUndecided: prometheus.Gauge;
  forgedAuthResultsRemoved: prometheus.Counter;
}

const MS_BUCKETS = [0.25, 0.5, 1, 2, 3, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000];

export function createEdgeMetrics(registry: Registry): EdgeMetrics {
  const registers = [registry];
  return {
    rcptOutcomes: new prometheus.Counter({
      name: 'mail_mta_rcpt_outcomes_total',
      help: 'RCPT TO replies by basic code, enhanced code and reason',
      labelNames: ['code', 'enhanced', 'reason'],
      registers,
    }),
    lookupDuration: new prometheus.Histogram({
      name: 'mail_mta_recipient_lookup_duration_ms',
      help: 'Live recipient lookup latency in PostgreSQL (ms), by outcome (found, not_found, failed)',
      labelNames: ['outcome'],
      buckets: MS_BUCKETS,
      registers,
    }),
    acceptDuration: new prometheus.Histogram({
      name: 'mail_mta_accept_duration_ms',
      help: 'The accept transaction (message, payload, deliveries) in ms, by outcome (committed, duplicate, failed, undecided)',
      labelNames: ['outcome'],
      buckets: MS_BUCKETS,
      registers,
    }),
    acceptBatchSize: new prometheus.Histogram({
      name: 'mail_mta_accept_batch_messages',
      help: 'Messages per accept statement (group commit: one transaction and one WAL flush for all of them)',
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    }),
    messagesAccepted: new prometheus.Counter({
      name: 'mail_mta_messages_accepted_total',
      help: 'Messages committed to PostgreSQL and answered 250',
      registers,
    }),
    bytesAccepted: new prometheus.Counter({
      name: 'mail_mta_accepted_bytes_total',
      help: 'Bytes of accepted messages as received in DATA',
      registers,
    }),
    deliveriesCreated: new prometheus.Counter({
      name: 'mail_mta_deliveries_created_total',
      help: 'Delivery rows created by accepted messages (one per expanded target)',
      registers,
    }),
    rejections: new prometheus.Counter({
      name: 'mail_mta_rejections_total',
      help: 'Commands and messages refused, by SMTP stage and reason',
      labelNames: ['stage', 'reason'],
      registers,
    }),
    connections: new prometheus.Counter({
      name: 'mail_mta_connections_total',
      help: 'SMTP connections opened',
      registers,
    }),
    activeConnections: new prometheus.Gauge({
      name: 'mail_mta_connections_active',
      help: 'SMTP connections open now',
      aggregator: 'sum', // Open in all the workers.
      registers,
    }),
    dataBytesInFlight: new prometheus.Gauge({
      name: 'mail_mta_data_bytes_in_flight',
      help: 'Bytes of DATA held in memory for messages not yet committed or refused',
      aggregator: 'sum', // Held in all the workers.
      registers,
    }),
    dataMemoryBudget: new prometheus.Gauge({
      name: 'mail_mta_data_memory_budget_bytes',
      help: 'MAIL_MTA_DATA_MEMORY_BUDGET: past it a message gets 452 4.3.1',
      aggregator: 'sum', // Each worker has the budget: the edge as a whole may hold N times it.
      registers,
    }),
    duplicatesAnswered: new prometheus.Counter({
      name: 'mail_mta_duplicate_accepts_total',
      help: 'Transactions answered with the queue id of an earlier accept of the same message (a sender retrying), not stored twice',
      registers,
    }),
    errorLimitDelays: new prometheus.Counter({
      name: 'mail_mta_error_limit_delays_total',
      help: 'Replies delayed by MAIL_MTA_ERROR_SLEEP because the session was past MAIL_MTA_SOFT_ERROR_LIMIT',
      registers,
    }),
    errorLimitDisconnects: new prometheus.Counter({
      name: 'mail_mta_error_limit_disconnects_total',
      help: 'Sessions closed with 421 4.7.0 at MAIL_MTA_HARD_ERROR_LIMIT',
      registers,
    }),
    earlyTalkers: new prometheus.Counter({
      name: 'mail_mta_early_talkers_total',
      help: 'Connections that sent a command before the greeting (MAIL_MTA_GREETING_DELAY), answered 421 and closed',
      registers,
    }),
    commandLineTimeouts: new prometheus.Counter({
      name: 'mail_mta_command_line_timeouts_total',
      help: 'Sessions whose command line did not arrive in full within MAIL_MTA_IDLE_TIMEOUT of its first byte (a trickling client), answered 421 and closed',
      registers,
    }),
    acceptsUndecided: new prometheus.Gauge({
      name: 'mail_mta_accepts_in_flight',
      help: 'Accept statements sent and not decided yet (a value that stays up means PostgreSQL is not answering)',
      aggregator: 'sum', // Out from all the workers.
      registers,
    }),
    forgedAuthResultsRemoved: new prometheus.Counter({
      name: 'mail_mta_forged_auth_results_removed_total',
      help: "Authentication-Results fields claiming the edge's authserv-id (MAIL_MTA_HOSTNAME) removed from stored messages (RFC 8601 5)",
      registers,
    }),
  };
}

export interface TlsCertificateMetricSet {
  notAfter: prometheus.Gauge;
  filesRefused: prometheus.Gauge;
  reloads: prometheus.Counter<'outcome'>;
}

/** The STARTTLS certificate's series, registered only when the edge has one (MAIL_MTA_TLS_CERT):
 *  an edge without a certificate has no expiry, not an expiry of 0. */
export function createTlsCertificateMetrics(registry: Registry): TlsCertificateMetricSet {
  const registers = [registry];
  return {
    notAfter: new prometheus.Gauge({
      name: 'mail_mta_tls_certificate_not_after_seconds',
      help: 'When the STARTTLS certificate in use expires (Unix time); absent without MAIL_MTA_TLS_CERT',
      aggregator: 'min', // The worker that presents the oldest certificate.
      registers,
    }),
    filesRefused: new prometheus.Gauge({
      name: 'mail_mta_tls_certificate_files_refused',
      help: '1 while MAIL_MTA_TLS_CERT / MAIL_MTA_TLS_KEY hold a changed pair that cannot be used (the previous certificate is still presented)',
      aggregator: 'max', // Any worker.
      registers,
    }),
    reloads: new prometheus.Counter({
      name: 'mail_mta_tls_certificate_reloads_total',
      help: 'Changed STARTTLS certificate files: applied (new handshakes present them) or refused (unusable; the previous pair stays)',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
