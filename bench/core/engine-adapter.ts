// The one place the core bench reaches into apps/core beyond startEngine: the relays it wraps to
// time each hand-over, the claim and commit reports it prints, and the engine's own claim and
// outcome statements for the "PostgreSQL alone" loop. When those move or change shape, only this
// file follows; run.ts sees BenchEngine and sqlAloneLoop.
import { claimDueDeliveries, createLogger, loadConfig, loadTemplateCatalog, recordOutcomes } from '@postern/shared';
import type pg from 'pg';
import { startEngine } from '../../apps/core/src/engine.ts';
import { EngineEvents } from '../../apps/core/src/engine-events.ts';
import type { Relay } from '../../apps/core/src/relay/relay.ts';
import { createSmtpRelay } from '../../apps/core/src/relay/smtp-relay.ts';
import { createStubRelay } from '../../apps/core/src/relay/stub-relay.ts';

// Warnings that are expected here (no Redis: stream intake off) would only break up the figures.
const log = createLogger('bench', 'error');

export interface BenchEngineOptions {
  dsn: string;
  templateDir: string;
  mode: 'stub' | 'smtp';
  /** host:port of the relay in smtp mode. */
  smtpAddr: string | null;
  concurrency: number;
  claimBatch: number;
  /** MAIL_CLAIM_AHEAD; undefined: the engine's default. */
  claimAhead: string | undefined;
  /** Told of every message the engine hands to the relay, with process.hrtime.bigint() of that moment. */
  onHandOver?: (deliveryId: string, at: bigint) => void;
}

export interface BenchEngine {
  /** Duration (ms) and size of every claim statement. */
  claims: { durationMs: number; claimed: number }[];
  /** Duration (ms) and size of every committed batch of outcomes. */
  commits: { durationMs: number; size: number }[];
  /** Resolves once this many outcomes (in total since start) have been committed. */
  committed(count: number): Promise<void>;
  stop(): Promise<void>;
}

/** The relay the engine would build for this mode, reporting each hand-over first. */
function timedRelay(options: BenchEngineOptions, timeoutMs: number, sendDeadlineMs: number): Relay {
  const [host = '127.0.0.1', port = '25'] = (options.smtpAddr ?? '').split(':');
  const inner =
    options.mode === 'stub'
      ? createStubRelay()
      : createSmtpRelay({ host, port: Number(port), username: undefined, password: undefined, timeoutMs, sendDeadlineMs, maxConnections: options.concurrency, logger: log });
  const onHandOver = options.onHandOver;
  if (!onHandOver) return inner;
  return {
    name: inner.name,
    ...(inner.discardsMessages ? { discardsMessages: true } : {}),
    send(message, progress) {
      onHandOver(message.deliveryId, process.hrtime.bigint());
      return inner.send(message, progress);
    },
    interrupt: () => inner.interrupt(),
    close: () => inner.close(),
  };
}

export async function startBenchEngine(options: BenchEngineOptions): Promise<BenchEngine> {
  const config = loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: options.dsn,
      MAIL_POSTGRES_POOL_MAX: String(options.concurrency + 6),
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: options.templateDir,
      MAIL_SMTP_MODE: options.mode,
      ...(options.smtpAddr ? { MAIL_SMTP_ADDR: options.smtpAddr } : {}),
      MAIL_SMTP_FROM: 'bench@postern.test',
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(options.concurrency),
      MAIL_CLAIM_BATCH_SIZE: String(options.claimBatch),
      ...(options.claimAhead !== undefined ? { MAIL_CLAIM_AHEAD: options.claimAhead } : {}),
      MAIL_LOG_LEVEL: 'error',
    },
    'core',
  );
  const claims: BenchEngine['claims'] = [];
  const commits: BenchEngine['commits'] = [];
  let total = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  // The engine's own events, subscribed before it starts so the first claims are seen too.
  const events = new EngineEvents(log);
  events.on('claim', ({ durationMs, claimed }) => claims.push({ durationMs, claimed }));
  events.on('completion:batch', (batch) => {
    commits.push({ durationMs: batch.durationMs, size: batch.size });
    total += batch.size;
    for (const waiter of waiters.filter((w) => w.count <= total)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  const engine = await startEngine(config, {
    logger: log,
    catalog: loadTemplateCatalog(config.templateDir),
    http: false,
    relay: timedRelay(options, config.smtp.timeoutMs, config.smtp.sendDeadlineMs),
    events,
  });
  return {
    claims,
    commits,
    committed: (count) => (count <= total ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
    stop: () => engine.stop(),
  };
}

/** The engine's claim and outcome statements in a bare loop, K clients, no engine around them:
 *  what PostgreSQL alone allows for claim + one outcome commit per claimed batch. Returns how many it finished. */
export async function sqlAloneLoop(pool: pg.Pool, clients: number, batch: number): Promise<number> {
  let finished = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, index) => {
      const me = `bench-sql-${index}`;
      for (;;) {
        const claimed = await claimDueDeliveries(pool, me, batch, 60_000);
        if (claimed.length === 0) return;
        const now = new Date();
        const attempt = { status: 'sent' as const, smtpCode: 250, enhancedCode: '2.0.0', smtpText: 'ok', startedAt: now, finishedAt: now, durationMs: 0 };
        await recordOutcomes(
          pool,
          me,
          claimed.map((d) => ({ deliveryId: d.id, attemptNumber: d.attempt_count, status: 'sent' as const, waitMs: 0, lastError: null, attempt })),
        );
        finished += claimed.length;
      }
    }),
  );
  return finished;
}
