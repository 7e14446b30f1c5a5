import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout, one line per event, with the app's name on every line. */
export function createLogger(app: string, level: string): Logger {
  return pino({
    name: app,
    level,
    base: { app, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Never log a secret by accident: DSNs carry passwords, tokens are credentials.
    redact: {
      paths: ['password', '*.password', 'dsn', '*.dsn', 'token', '*.token', 'authorization', '*.authorization'],
      censor: '[redacted]',
    },
  });
}
