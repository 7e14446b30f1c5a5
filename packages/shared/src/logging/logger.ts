// The one logger configuration of every process: JSON lines, the app's name on each, secrets
// redacted. A message is named `messageId` and a delivery `deliveryId` on every line about it, in
// every app, so that one search finds a message's whole story (docs/architecture.md, Logs).
import { type DestinationStream, pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout (or `destination`: tests read them), one line per event, with the app's
 *  name on every line. */
export function createLogger(app: string, level: string, destination?: DestinationStream): Logger {
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
  return destination ? pino(options, destination) : pino(options);
}
