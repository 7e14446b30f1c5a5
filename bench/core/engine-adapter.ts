// The one place the core benches reach into apps/core beyond startEngine: the relays they wrap to
// time each hand-over (or hold sending back while the stream intake is measured), the claim and
// commit reports they print, the engine's count of accepted stream commands they time the intake
// by, and the engine's own statements for the floors: claim and outcome for run.ts's "PostgreSQL
// alone" loop, acceptCommand for stream-intake.ts's. When those move or change shape, only this
// file follows; the benches see BenchEngine, sqlAloneLoop and acceptAloneLoop. They are loaded from a build's tree
// (loadEngineTree), this one's or another's (a baseline, bench/compare/), and only when asked: a
// process that traces must load pg after its tracing is in place (engine-host.ts).
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import type { Relay } from '../../apps/core/src/relay/relay.ts';
import type { DeliveryCommand } from '../../packages/shared/src/index.ts';
import { ms, percentile } from './figures.ts';

type Shared = typeof import('../../packages/shared/src/index.ts');

/** The modules of one build the bench uses. */
export interface EngineTree {
  root: string;
  shared: Pick<Shared, 'acceptCommand' | 'claimDueDeliveries' | 'createLogger' | 'loadConfig' | 'loadTemplateCatalog' | 'recordOutcomes'>;
  startEngine: (typeof import('../../apps/core/src/engine.ts'))['startEngine'];
  EngineEvents: (typeof import('../../apps/core/src/engine-events.ts'))['EngineEvents'];
  createSmtpRelay: (typeof import('../../apps/core/src/relay/smtp-relay.ts'))['createSmtpRelay'];
  createStubRelay: (typeof import('../../apps/core/src/relay/stub-relay.ts'))['createStubRelay'];
}

export async function loadEngineTree(root: string): Promise<EngineTree> {
  const load = (file: string) => import(pathToFileURL(path.join(root, file)).href);
  const [shared, engine, events, smtp, stub] = await Promise.all([
    load('packages/shared/src/index.ts'),
    load('apps/core/src/engine.ts'),
    load('apps/core/src/engine-events.ts'),
    load('apps/core/src/relay/smtp-relay.ts'),
    load('apps/core/src/relay/stub-relay.ts'),
  ]);
  return {
    root,
    shared,
    startEngine: engine.startEngine,
    EngineEvents: events.EngineEvents,
    createSmtpRelay: smtp.createSmtpRelay,
    createStubRelay: stub.createStubRelay,
  };
}

/** MAIL_SMTP_FROM of the bench's engines: the envelope sender, and the Message-IDs' domain. */
const BENCH_SENDER = 'bench@postern.test';

// Warnings that are expected here (no Redis: stream intake off) would only break up the figures.
const logOf = (tree: EngineTree) => tree.shared.createLogger('bench', 'error');

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
  /** host:port of Redis: the stream intake runs (without it, it is off). */
  redisAddr?: string;
  redisPassword?: string;
  /** The first send waits until the bench calls releaseSends() (stream-intake.ts): with one
   *  worker and no claim ahead the scheduler then claims nothing more, so sending does not
   *  compete with the intake. Later sends (there should be none) go through at once, counted. */
  holdSends?: boolean;
  /** Told of every stream command the engine accepted, process.hrtime.bigint() just after its
   *  transaction committed (the engine counts it in mail_stream_commands_accepted_total then). */
  onAccepted?: (at: bigint) => void;
}

export interface BenchEngine {
  /** Duration (ms) and size of every claim statement. */
  claims: { durationMs: number; claimed: number }[];
  /** Duration (ms) and size of every committed batch of outcomes. */
  commits: { durationMs: number; size: number }[];
  /** Resolves once this many outcomes (in total since start) have been committed. */
  committed(count: number): Promise<void>;
  /** Messages handed to the relay so far (counted when onHandOver or holdSends is given). */
  sends(): number;
  /** Lets the held send (holdSends) finish. */
  releaseSends(): void;
  stop(): Promise<void>;
}

/** The relay the engine would build for this mode, reporting each hand-over first (and holding the
 *  first one back when asked: holdSends). */
function timedRelay(tree: EngineTree, options: BenchEngineOptions, timeoutMs: number, sendDeadlineMs: number, held: Promise<void>, counted: { sends: number }): Relay {
  const [host = '127.0.0.1', port = '25'] = (options.smtpAddr ?? '').split(':');
  const log = logOf(tree);
  const inner =
    options.mode === 'stub'
      ? tree.createStubRelay()
      : tree.createSmtpRelay({ host, port: Number(port), username: undefined, password: undefined, timeoutMs, sendDeadlineMs, maxConnections: options.concurrency, logger: log });
  const onHandOver = options.onHandOver;
  if (!onHandOver && !options.holdSends) return inner;
  return {
    name: inner.name,
    ...(inner.discardsMessages ? { discardsMessages: true } : {}),
    send(message, progress) {
      onHandOver?.(message.deliveryId, process.hrtime.bigint());
      counted.sends += 1;
      if (options.holdSends && counted.sends === 1) return held.then(() => inner.send(message, progress));
      return inner.send(message, progress);
    },
    interrupt: () => inner.interrupt(),
    close: () => inner.close(),
  };
}

export async function startBenchEngine(tree: EngineTree, options: BenchEngineOptions): Promise<BenchEngine> {
  const log = logOf(tree);
  const config = tree.shared.loadConfig(
    {
      MAIL_POSTGRES_PRIMARY_DSN: options.dsn,
      MAIL_POSTGRES_POOL_MAX: String(options.concurrency + 6),
      MAIL_INTERNAL_HTTP_ADDR: '127.0.0.1:0',
      MAIL_TEMPLATE_DIR: options.templateDir,
      MAIL_SMTP_MODE: options.mode,
      ...(options.smtpAddr ? { MAIL_SMTP_ADDR: options.smtpAddr } : {}),
      MAIL_SMTP_FROM: BENCH_SENDER,
      MAIL_ATTEMPT_WORKER_CONCURRENCY: String(options.concurrency),
      MAIL_CLAIM_BATCH_SIZE: String(options.claimBatch),
      ...(options.claimAhead !== undefined ? { MAIL_CLAIM_AHEAD: options.claimAhead } : {}),
      MAIL_LOG_LEVEL: 'error',
      ...(options.redisAddr ? { MAIL_REDIS_MASTER_ADDR: options.redisAddr } : {}),
      ...(options.redisPassword ? { MAIL_REDIS_PASSWORD: options.redisPassword } : {}),
    },
    'core',
  );
  const claims: BenchEngine['claims'] = [];
  const commits: BenchEngine['commits'] = [];
  let total = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  // The engine's own events, subscribed before it starts so the first claims are seen too.
  const events = new tree.EngineEvents(log);
  events.on('claim', ({ durationMs, claimed }) => claims.push({ durationMs, claimed }));
  events.on('completion:batch', (batch) => {
    commits.push({ durationMs: batch.durationMs, size: batch.size });
    total += batch.size;
    for (const waiter of waiters.filter((w) => w.count <= total)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  let releaseSends = () => {};
  const held = new Promise<void>((resolve) => {
    releaseSends = resolve;
  });
  const counted = { sends: 0 };
  const engine = await tree.startEngine(config, {
    logger: log,
    catalog: tree.shared.loadTemplateCatalog(config.templateDir),
    http: false,
    relay: timedRelay(tree, options, config.smtp.timeoutMs, config.smtp.sendDeadlineMs, held, counted),
    events,
  });
  const onAccepted = options.onAccepted;
  if (onAccepted) {
    // The stream consumer counts a command here right after its transaction committed, before the
    // XACK; it can have accepted none yet (its first read is a few Redis round trips away).
    const counter = engine.registry.getSingleMetric('mail_stream_commands_accepted_total') as { inc: (...args: unknown[]) => void } | undefined;
    if (!counter) throw new Error('this build has no mail_stream_commands_accepted_total to time its intake by');
    const inc = counter.inc.bind(counter);
    counter.inc = (...args: unknown[]) => {
      onAccepted(process.hrtime.bigint());
      inc(...args);
    };
  }
  return {
    claims,
    commits,
    committed: (count) => (count <= total ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
    sends: () => counted.sends,
    releaseSends: () => releaseSends(),
    stop: () => {
      releaseSends();
      return engine.stop();
    },
  };
}

/** The engine's claim and outcome statements in a bare loop, K clients, no engine around them:
 *  what PostgreSQL alone allows for claim + one outcome commit per claimed batch. Returns how many it finished. */
export async function sqlAloneLoop(tree: EngineTree, pool: pg.Pool, clients: number, batch: number): Promise<number> {
  const { claimDueDeliveries, recordOutcomes } = tree.shared;
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

/** The engine's acceptance of a stream command (acceptCommand: the template check, then one
 *  transaction of its reservation lookup, delivery insert and reservation insert), for commands
 *  decoded beforehand, one after the other as the engine's one stream consumer takes them, no
 *  Redis and no engine around them. Returns how many it created. */
export async function acceptAloneLoop(tree: EngineTree, pool: pg.Pool, commands: readonly DeliveryCommand[]): Promise<number> {
  const catalog = tree.shared.loadTemplateCatalog(path.join(tree.root, 'templates'));
  let created = 0;
  for (const command of commands) {
    const outcome = await tree.shared.acceptCommand(pool, command, { catalog, sender: BENCH_SENDER });
    if (outcome.status === 'created') created += 1;
  }
  return created;
}

/** p50 and p99 of a list of durations, e.g. "3.03/24.0 ms". */
function p50p99(durations: number[]): string {
  const sorted = [...durations].sort((a, b) => a - b);
  return `${ms(percentile(sorted, 50))}/${ms(percentile(sorted, 99))} ms`;
}

/** The claims and outcome commits of a run, in a line. */
export function engineDetail(engine: BenchEngine): string {
  const nonEmpty = engine.claims.filter((claim) => claim.claimed > 0);
  const perClaim = nonEmpty.reduce((sum, claim) => sum + claim.claimed, 0) / Math.max(1, nonEmpty.length);
  const perCommit = engine.commits.reduce((sum, commit) => sum + commit.size, 0) / Math.max(1, engine.commits.length);
  return (
    `${engine.claims.length} claims of ${perClaim.toFixed(1)}, p50/p99 ${p50p99(engine.claims.map((claim) => claim.durationMs))}; ` +
    `${engine.commits.length} outcome commits of ${perCommit.toFixed(1)}, p50/p99 ${p50p99(engine.commits.map((commit) => commit.durationMs))}`
  );
}
