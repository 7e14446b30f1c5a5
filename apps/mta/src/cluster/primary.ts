// The edge's primary when MAIL_MTA_PROCESSES > 1 (node:cluster). It serves no SMTP: it checks that
// the SMTP address is free, forks N workers (worker.ts) that each bind it with SO_REUSEPORT — the
// kernel spreads connections among their sockets, nothing passes through this process — and owns
// the ops listener: /healthz, /readyz (200 when every worker listens and PostgreSQL answers, 503
// while stopping) and /metrics (the workers' registries summed, a dead worker's counts kept in the
// sum: worker-metrics.ts; then the primary's own series). A worker that dies is forked again after
// a short backoff; on stop each worker gets SIGTERM and MAIL_SHUTDOWN_TIMEOUT to finish, and is
// killed past it.
// Migrations and the server-settings check run before this, once (main.ts).
import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import {
  childLogger,
  type ListenAddress,
  type Logger,
  type OpsServer,
  openDatabaseReadinessProbe,
  type PosternConfig,
  prometheus,
  type RunningService,
  startOpsServer,
} from '@postern/shared';
import { isWorkerListening, WORKER_INDEX_VARIABLE } from './messages.ts';
import { createWorkerMetrics } from './worker-metrics.ts';

/** Past MAIL_SHUTDOWN_TIMEOUT, how long a worker still has before it is killed: its own deadline
 *  (run-service.ts) is a second past the timeout, so one that stops itself is not killed. */
export const WORKER_KILL_MARGIN_MS = 2_000;
/** The primary's own forced exit, past MAIL_SHUTDOWN_TIMEOUT: after it has killed its workers. */
export const PRIMARY_DEADLINE_MARGIN_MS = WORKER_KILL_MARGIN_MS + 2_000;
/** A worker that died is forked again after this, doubling while it keeps dying soon after its start. */
const RESTART_BACKOFF_MS = 250;
const RESTART_BACKOFF_MAX_MS = 10_000;
/** A worker that ran this long before it died is restarted at the shortest backoff again. */
const STABLE_RUN_MS = 60_000;

export interface PrimaryDeps {
  logger: Logger;
  /** The module a worker runs (main.ts, which takes the worker's path when it is a cluster worker). */
  workerModule: string;
}

interface Exit {
  code: number | null;
  signal: string | null;
}

interface Slot {
  index: number;
  worker: Worker | null;
  exited: Promise<Exit> | null;
  listening: boolean;
  /** Restarts in a row, each soon after the previous start: the backoff's exponent. */
  quickRestarts: number;
  startedAt: number;
  restartTimer: NodeJS.Timeout | undefined;
}

function formatAddress(address: ListenAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/**
 * Binds the SMTP address once, without SO_REUSEPORT, and lets it go: another process listening there
 * — another edge's workers included, which would otherwise share the port with ours silently —
 * fails the start with EADDRINUSE here, and port 0 becomes the one port every worker binds.
 */
async function claimAddress(address: ListenAddress): Promise<ListenAddress> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      probe.off('error', reject);
      resolve();
    });
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return { host: address.host, port };
}

function requestPath(url: string | undefined): string {
  return new URL(url ?? '/', 'http://localhost').pathname;
}

export async function startPrimary(config: PosternConfig, deps: PrimaryDeps): Promise<RunningService> {
  const log = childLogger(deps.logger, { component: 'primary' });
  const processes = config.mta.processes;
  const smtpAddress = await claimAddress(config.mta.listen);

  const registry = new prometheus.Registry();
  registry.setDefaultLabels({ app: 'mta' });
  const restarts = new prometheus.Counter({
    name: 'mail_mta_worker_restarts_total',
    help: 'Edge workers (MAIL_MTA_PROCESSES) forked again after they exited unexpectedly',
    registers: [registry],
  });
  const listeningGauge = new prometheus.Gauge({
    name: 'mail_mta_workers_listening',
    help: 'Edge workers whose SMTP listener is open (MAIL_MTA_PROCESSES of them when all is well)',
    registers: [registry],
  });
  // prom-client leaves the workers' start times out of the sum (aggregator "omit"): the edge's is
  // the primary's, which a worker's restart does not change (mail_mta_worker_restarts_total does).
  new prometheus.Gauge({
    name: 'process_start_time_seconds',
    help: "Start time of the edge's primary process since unix epoch in seconds",
    registers: [registry],
  }).set(Math.round(Date.now() / 1000 - process.uptime()));
  const workerMetrics = createWorkerMetrics();

  // The primary's one connection, for its readiness check alone (packages/shared/src/db/readiness-probe.ts).
  const database = openDatabaseReadinessProbe({
    dsn: config.postgres.dsn,
    applicationName: 'postern-mta-primary',
    connectTimeoutMs: config.postgres.connectTimeoutMs,
    logger: log,
  });

  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  const slots: Slot[] = Array.from({ length: processes }, (_, offset) => ({
    index: offset + 1,
    worker: null,
    exited: null,
    listening: false,
    quickRestarts: 0,
    startedAt: 0,
    restartTimer: undefined,
  }));
  const listeningCount = () => slots.filter((slot) => slot.listening).length;
  let started: { resolve: () => void; reject: (error: Error) => void } | null = null;
  const allListening = new Promise<void>((resolve, reject) => {
    started = { resolve, reject };
  });

  cluster.setupPrimary({ exec: deps.workerModule, args: [] });

  const fork = (slot: Slot) => {
    const worker = cluster.fork({ [WORKER_INDEX_VARIABLE]: String(slot.index), MAIL_SMTP_LISTEN_ADDR: formatAddress(smtpAddress) });
    const pid = worker.process.pid;
    slot.worker = worker;
    slot.listening = false;
    slot.startedAt = Date.now();
    slot.exited = new Promise((resolve) => worker.once('exit', (code: number | null, signal: string | null) => resolve({ code, signal })));
    // An IPC send to a worker that is going away (a metrics request) fails here, not in the primary.
    worker.on('error', (error) => log.warn({ err: error, worker: slot.index, workerPid: pid }, 'edge worker IPC error'));
    worker.on('message', (message: unknown) => {
      workerMetrics.receive(worker.id, message);
      if (!isWorkerListening(message) || slot.worker !== worker) return;
      slot.listening = true;
      listeningGauge.set(listeningCount());
      log.info({ worker: slot.index, workerPid: pid }, 'edge worker listening');
      if (phase === 'starting' && listeningCount() === processes) started?.resolve();
    });
    worker.once('exit', (code: number | null, signal: string | null) => {
      workerMetrics.retire(worker.id);
      if (slot.worker === worker) {
        slot.worker = null;
        slot.listening = false;
        listeningGauge.set(listeningCount());
      }
      if (phase === 'stopping') {
        log.info({ worker: slot.index, workerPid: pid, code, signal }, 'edge worker exited');
        return;
      }
      if (phase === 'starting') {
        // Not restarted: what stopped it at its start (its log says what) would stop the next one too.
        started?.reject(
          new Error(`edge worker ${slot.index} (pid ${pid}) exited before its SMTP listener opened (exit code ${code}, signal ${signal}); its log says why`),
        );
        return;
      }
      if (Date.now() - slot.startedAt > STABLE_RUN_MS) slot.quickRestarts = 0;
      const delayMs = Math.min(RESTART_BACKOFF_MS * 2 ** slot.quickRestarts, RESTART_BACKOFF_MAX_MS);
      slot.quickRestarts += 1;
      restarts.inc();
      log.error({ worker: slot.index, workerPid: pid, code, signal, restartInMs: delayMs }, 'edge worker exited unexpectedly; restarting it');
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = undefined;
        if (phase === 'running') fork(slot);
      }, delayMs);
    });
  };

  /** SIGTERM to every worker, SIGKILL to those still running at the deadline; true when all stopped by themselves, with exit code 0. */
  const stopWorkers = async (deadlineMs: number): Promise<boolean> => {
    phase = 'stopping';
    for (const slot of slots) clearTimeout(slot.restartTimer);
    const live = slots.flatMap((slot) => (slot.worker && slot.exited ? [{ slot, worker: slot.worker, exited: slot.exited }] : []));
    for (const { worker } of live) if (!worker.isDead()) worker.process.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), deadlineMs);
    });
    const exits = await Promise.race([Promise.all(live.map((entry) => entry.exited)), late]);
    clearTimeout(timer);
    if (exits !== 'late') return exits.every((exit) => exit.code === 0);
    for (const { slot, worker, exited } of live) {
      if (worker.isDead()) continue;
      log.error({ worker: slot.index, workerPid: worker.process.pid }, 'edge worker did not stop in time; killing it');
      worker.process.kill('SIGKILL');
      await exited;
    }
    return false;
  };

  for (const slot of slots) fork(slot);
  try {
    await allListening;
  } catch (error) {
    await stopWorkers(config.engine.shutdownTimeoutMs + WORKER_KILL_MARGIN_MS);
    await database.end();
    throw error;
  }
  phase = 'running';

  let ops: OpsServer;
  try {
    ops = await startOpsServer({
      addr: config.http.mta,
      maxConnections: config.http.maxConnections,
      logger: deps.logger,
      registry,
      readiness: {
        postgres: database.check,
        smtp: async () => {
          if (phase !== 'running') throw new Error('stopping');
          const listening = listeningCount();
          if (listening < processes) throw new Error(`${listening} of ${processes} edge workers listen`);
        },
      },
      handle: async (request, response) => {
        if ((request.method !== 'GET' && request.method !== 'HEAD') || requestPath(request.url) !== '/metrics') return false;
        const workers = await workerMetrics.collect(slots.flatMap((slot) => (slot.worker && !slot.worker.isDead() ? [slot.worker] : [])));
        const own = await registry.metrics();
        response.writeHead(200, { 'content-type': registry.contentType });
        response.end(workers.trim() === '' ? own : `${workers.trimEnd()}\n\n${own}`);
        return true;
      },
    });
  } catch (error) {
    await stopWorkers(config.engine.shutdownTimeoutMs + WORKER_KILL_MARGIN_MS);
    await database.end();
    throw error;
  }
  log.info({ processes, address: formatAddress(smtpAddress) }, 'edge workers listening');

  return {
    async stop() {
      log.info({ workers: slots.filter((slot) => slot.worker).length }, 'stopping the edge workers');
      const clean = await stopWorkers(config.engine.shutdownTimeoutMs + WORKER_KILL_MARGIN_MS);
      await ops.close();
      await database.end();
      if (!clean) throw new Error('not every edge worker stopped cleanly (see above)');
    },
  };
}
