// The common life of a Postern process: start, serve, and on SIGTERM / SIGINT stop in order within
// MAIL_SHUTDOWN_TIMEOUT. A second signal, or the deadline, forces the exit. When started by a parent
// over IPC (npm start's orchestrator), losing the parent is treated as SIGTERM, so no orphan keeps
// holding ports. A cluster worker (the edge's MAIL_MTA_PROCESSES) is stopped by its primary, which
// owns the deadline: a signal that reaches it twice (a terminal's Ctrl-C goes to the whole process
// group, and the primary forwards it too) is one request, not a reason to exit at once. The
// process's tracing (start-tracing.ts) is flushed last, so the spans of the stop itself are
// exported too.
import type { Logger } from 'pino';
import type { Tracing } from './start-tracing.ts';
import { explainStartupFailure } from './startup-failure.ts';

export interface RunningService {
  /** Stop accepting work, finish or release what is in flight, close connections. */
  stop(): Promise<void>;
}

export interface RunServiceOptions {
  name: string;
  logger: Logger;
  shutdownTimeoutMs: number;
  /** The process's tracing, as main.ts started it before anything else; default: off. */
  tracing?: Tracing;
  start(): Promise<RunningService>;
  /** Forced exit this long after shutdownTimeoutMs (default 1 s); a primary waits for its workers first. */
  deadlineMarginMs?: number;
  /** A cluster worker, which its primary stops (and kills past its deadline): a repeated stop
   *  request is the same request. (Losing the primary, Node's cluster exits the worker at once.) */
  worker?: boolean;
}

/** Exports the spans still buffered, within a second: a collector that does not answer must not
 *  hold up the exit. */
async function flush(tracing: Tracing | undefined, logger: Logger): Promise<void> {
  if (!tracing?.enabled) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      logger.warn('tracing: spans not exported within 1 s of stopping; exiting without them');
      resolve();
    }, 1_000);
  });
  await Promise.race([tracing.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'tracing: exporting the last spans failed')), late]);
  clearTimeout(timer);
}

export async function runService(options: RunServiceOptions): Promise<void> {
  const { logger } = options;
  if (options.tracing) logger.info(options.tracing.summary, `tracing ${options.tracing.enabled ? 'on' : 'off'}`);
  process.on('unhandledRejection', (reason) => {
    // A bug, but not a reason to drop every session in flight: log loudly and carry on.
    logger.error({ err: reason }, 'unhandled promise rejection');
  });

  let service: RunningService;
  try {
    service = await options.start();
  } catch (error) {
    const explained = explainStartupFailure(error);
    if (explained) logger.fatal(`${options.name} failed to start: ${explained.what}: ${explained.why}. ${explained.todo}`);
    else logger.fatal({ err: error }, `${options.name} failed to start`);
    process.exitCode = 1;
    await flush(options.tracing, logger);
    // Give pino a tick to flush, then leave even if a handle is still open.
    setTimeout(() => process.exit(1), 100).unref();
    return;
  }
  logger.info(`${options.name} started`);

  let stopping = false;
  const shutdown = (reason: string) => {
    if (stopping && options.worker) {
      logger.debug({ reason }, 'already stopping');
      return;
    }
    if (stopping) {
      logger.warn({ reason }, 'second stop request: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ reason, timeoutMs: options.shutdownTimeoutMs }, `${options.name} stopping`);
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: options.shutdownTimeoutMs }, 'shutdown deadline passed: exiting with work unfinished');
      process.exit(1);
    }, options.shutdownTimeoutMs + (options.deadlineMarginMs ?? 1_000));
    deadline.unref();
    service.stop().then(
      async () => {
        logger.info(`${options.name} stopped`);
        await flush(options.tracing, logger);
        clearTimeout(deadline);
        process.exitCode = 0;
        setTimeout(() => process.exit(0), 50).unref();
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  if (process.send) {
    // Gone while this process was starting: the 'disconnect' event has passed already.
    if (!process.connected) shutdown('parent process gone');
    else process.on('disconnect', () => shutdown('parent process gone'));
  }
}
