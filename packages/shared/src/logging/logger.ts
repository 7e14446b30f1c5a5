// One logger per process: JSON lines for machines (log shippers, tests reading a child's output),
// readable coloured lines for a person at a terminal (`npm start`). MAIL_LOG_FORMAT decides;
// `auto` looks at whether stdout is a terminal. The pretty stream writes synchronously, so a fatal
// line before exit is never lost in a buffer.
import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };
export type LogFormat = 'auto' | 'json' | 'pretty';

/** The format `auto` resolves to for this process. */
export function resolveLogFormat(format: LogFormat, stdoutIsTty = process.stdout.isTTY === true): 'json' | 'pretty' {
  if (format !== 'auto') return format;
  return stdoutIsTty ? 'pretty' : 'json';
}

/** Logs to stdout, one line per event, with the app's name on every line. */
export function createLogger(app: string, level: string, format: LogFormat = (process.env.MAIL_LOG_FORMAT as LogFormat | undefined) ?? 'auto'): Logger {
  const options = {
    name: app,
    level,
    base: { app, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Never log a secret by accident: DSNs carry passwords, tokens are credentials.
    redact: {
      paths: ['password', '*.password', 'dsn', '*.dsn', 'token', '*.token', 'authorization', '*.authorization'],
      censor: '[redacted]',
    },
  };
  if (resolveLogFormat(format) === 'json') return pino(options);
  return pino(options, PinoPretty({ sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,app' }));
}
