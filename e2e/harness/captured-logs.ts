// A process's log lines kept in memory, for tests that check what was logged: the same logger
// configuration as production (createLogger), written to an array instead of stdout. A line that
// names a key twice is kept apart as written too: parsed, it would show only one of them
// (docs/observability.md, Logs).
import { createLogger, type Logger, repeatedTopLevelKeys } from '@postern/shared';

export interface CapturedLogs {
  logger: Logger;
  /** Every line so far, parsed. */
  lines: Array<Record<string, unknown>>;
  /** Every line so far that names a top-level key more than once, as written, after those keys. */
  repeatedKeys: string[];
}

export function captureLogs(app: string, level = 'info'): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const repeatedKeys: string[] = [];
  const logger = createLogger(app, level, {
    destination: {
      write(line: string) {
        const repeated = repeatedTopLevelKeys(line);
        if (repeated.length > 0) repeatedKeys.push(`${repeated.join(', ')}: ${line.trimEnd()}`);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines, repeatedKeys };
}

export interface KeyCheckedLogger {
  logger: Logger;
  /** Throws with every line so far that named a top-level key more than once. */
  assertEachKeyOnce(): void;
}

/** The logger a test edge or engine gets unless the test brings its own: every line it writes is
 *  read for a repeated key (kept only when it has one), at `level`, or at `info` (what production
 *  runs at) where the tests' lines are off, `silent`; printed only when POSTERN_E2E_LOG_LEVEL asks. */
export function keyCheckedLogger(app: string, level: string): KeyCheckedLogger {
  const repeated: string[] = [];
  const print = level !== 'silent';
  const logger = createLogger(app, print ? level : 'info', {
    destination: {
      write(line: string) {
        const keys = repeatedTopLevelKeys(line);
        if (keys.length > 0) repeated.push(`${keys.join(', ')}: ${line.trimEnd()}`);
        if (print) process.stdout.write(line);
      },
    },
  });
  return {
    logger,
    assertEachKeyOnce() {
      if (repeated.length > 0) throw new Error(`${app} wrote ${repeated.length} log line(s) naming a key twice:\n${repeated.join('\n')}`);
    },
  };
}

/** `process` whose stop() also checks that every line it logged named each key once. */
export function checkingKeysOnStop<T extends { stop(): Promise<void> }>(process: T, checked: KeyCheckedLogger): T {
  const stop = process.stop.bind(process);
  return Object.assign(process, {
    async stop() {
      await stop();
      checked.assertEachKeyOnce();
    },
  });
}
