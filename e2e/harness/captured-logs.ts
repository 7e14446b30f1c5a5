// A process's log lines kept in memory, for tests that check what was logged: the same logger
// configuration as production (createLogger), written to an array instead of stdout.
import { createLogger, type Logger } from '@postern/shared';

export interface CapturedLogs {
  logger: Logger;
  /** Every line so far, parsed. */
  lines: Array<Record<string, unknown>>;
}

export function captureLogs(app: string, level = 'info'): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger(app, level, {
    destination: {
      write(line: string) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}
