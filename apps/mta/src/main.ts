// Boot of the SMTP edge: tracing first (OTEL_*, off unless an exporter is named: the modules it
// instruments must load after it, so everything else is imported once it is in place), then
// configuration (all problems at once), logger, migrations under their advisory lock, then the
// listeners; SIGTERM stops it within MAIL_SHUTDOWN_TIMEOUT (runService).
// MAIL_MTA_PROCESSES > 1: this process becomes the primary (cluster/primary.ts: migrations, the ops
// listener, N workers forked from this same module) and each worker runs the edge (cluster/worker.ts).
import cluster from 'node:cluster';
import { startTracing } from '@postern/shared/start-tracing';

const tracing = await startTracing('mta');
const { bootConfig, childLogger, prepareDatabase, runService } = await import('@postern/shared');
const { config, logger } = bootConfig('mta');

if (cluster.isWorker) {
  const { startWorker, workerIndex } = await import('./cluster/worker.ts');
  const workerLogger = childLogger(logger, { worker: workerIndex() });
  void runService({
    name: 'mta worker',
    logger: workerLogger,
    tracing,
    shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
    worker: true,
    start: () => startWorker(config, workerLogger),
  });
} else if (config.mta.processes > 1) {
  const { PRIMARY_DEADLINE_MARGIN_MS, startPrimary } = await import('./cluster/primary.ts');
  void runService({
    name: 'mta',
    logger,
    tracing,
    shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
    deadlineMarginMs: PRIMARY_DEADLINE_MARGIN_MS,
    async start() {
      await prepareDatabase({ dsn: config.postgres.dsn, logger });
      return startPrimary(config, { logger, workerModule: import.meta.filename });
    },
  });
} else {
  const { startEdge } = await import('./edge.ts');
  void runService({
    name: 'mta',
    logger,
    tracing,
    shutdownTimeoutMs: config.engine.shutdownTimeoutMs,
    async start() {
      await prepareDatabase({ dsn: config.postgres.dsn, logger });
      const edge = await startEdge(config, { logger });
      return { stop: () => edge.stop() };
    },
  });
}
