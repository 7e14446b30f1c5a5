// The one logger configuration of every process: the app's name on each line, secrets redacted.
// JSON lines for machines (log shippers, tests reading a child's output), readable coloured lines
// for a person at a terminal (`npm start`): MAIL_LOG_FORMAT decides, and `auto` looks at whether
// stdout is a terminal. The pretty stream writes to a terminal synchronously, so a fatal line before
// exit is never lost in a buffer. Anywhere else (a pipe, a file) lines go through the stdout sink
// (stdout-sink.ts), which never blocks: a pipe nobody reads drops lines (counted, then said) rather
// than stop the process from handling SIGTERM. A message is named `messageId` and a delivery `deliveryId` on every line
// about it, in every app, so that one search finds a message's whole story (docs/architecture.md,
// Logs). A line logged inside a span carries its trace and span ids (otel_trace_id,
// otel_span_id), so a log line leads to its trace and a trace to its lines; with tracing off
// there is never an active span, and lines are as they were.

import { Writable } from 'node:stream';
import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { createStdoutSink, type StdoutSink } from './stdout-sink.ts';

export type { Logger };
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  /** Default: MAIL_LOG_FORMAT, else `auto`. */
  format?: LogFormat;
  /** JSON lines go here instead of stdout (tests read them). */
  destination?: DestinationStream;
}

/** The format `auto` resolves to for this process. */
export function resolveLogFormat(format: LogFormat, stdoutIsTty = process.stdout.isTTY === true): 'json' | 'pretty' {
  if (format !== 'auto') return format;
  return stdoutIsTty ? 'pretty' : 'json';
}

/** The ids of the span active where the line is logged (a new object each time: pino merges the
 *  line's own fields into it). */
function traceIds(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const ids = span.spanContext();
  return isSpanContextValid(ids) ? { otel_trace_id: ids.traceId, otel_span_id: ids.spanId } : {};
}

let sink: StdoutSink | undefined;

/** The process's one stdout sink (every logger's lines in one queue, in order); the first
 *  logger's name is on the line that says how many lines were dropped. */
export function stdoutSink(app = 'postern'): StdoutSink {
  sink ??= createStdoutSink({
    describeDrops: (dropped) =>
      `${JSON.stringify({ level: 40, time: new Date().toISOString(), app, pid: process.pid, name: app, droppedLines: dropped, msg: 'stdout was not read: log lines dropped' })}\n`,
  });
  return sink;
}

/** Logs to stdout, one line per event, with the app's name on every line. */
export function createLogger(app: string, level: string, options: LoggerOptions = {}): Logger {
  const settings = {
    name: app,
    level,
    base: { app, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: traceIds,
    // Never log a secret by accident: DSNs carry passwords, tokens are credentials.
    redact: {
      paths: ['password', '*.password', 'dsn', '*.dsn', 'token', '*.token', 'authorization', '*.authorization'],
      censor: '[redacted]',
    },
  };
  if (options.destination) return pino(settings, options.destination);
  const format = options.format ?? (process.env.MAIL_LOG_FORMAT as LogFormat | undefined) ?? 'auto';
  const resolved = resolveLogFormat(format);
  const pretty = { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,app' };
  if (resolved === 'pretty' && process.stdout.isTTY) return pino(settings, PinoPretty({ ...pretty, sync: true }));
  const lines = stdoutSink(app);
  if (resolved === 'json') return pino(settings, lines);
  // Pretty lines asked for where no terminal is (MAIL_LOG_FORMAT=pretty | tee): the same sink.
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.write(String(chunk));
      done();
    },
  });
  return pino(settings, PinoPretty({ ...pretty, destination }));
}
