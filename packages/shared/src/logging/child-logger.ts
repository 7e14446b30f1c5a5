// The one way Postern makes a logger from another: every key on a line once. pino writes a child's
// bindings after its parent's, so a component's logger handed to another component that bound
// `component` again wrote the key twice in one line (`"component":"stream",...,"component":
// "stream-doorbell"`): Elasticsearch refuses such a document, and other tools keep the first or the
// last value, so one line read differently in two of them.
//
// So a child is made from the logger its chain of children started at, with every binding of the
// chain once: a nested component is `outer/inner` in the one `component` key (`stream/stream-doorbell`,
// `smtp/accept-batcher`), and any other key a child binds again takes the child's value. What a
// logger was made from is remembered beside it (a WeakMap keyed by the logger, so two engines in one
// process never share an entry, and nothing outlives its logger). `scripts/check-log-children.ts`
// fails the lint step on a `.child(` anywhere else, so the rule cannot be forgotten.
import type { Logger } from 'pino';

export type LogBindings = Record<string, string | number | boolean | undefined>;

interface Lineage {
  /** The logger the chain started at: one that childLogger did not make. */
  origin: Logger;
  /** Every binding made since `origin`, each key once. */
  bindings: LogBindings;
}

const lineages = new WeakMap<Logger, Lineage>();

/** Keys every line may have besides the origin's bindings: pino's own (its `bindings()` leaves
 *  out `pid` and `hostname`), and the trace ids logger.ts adds to a line logged inside a span. */
const WRITTEN_BY_THE_LOGGER = ['level', 'time', 'msg', 'pid', 'hostname', 'otel_trace_id', 'otel_span_id'];

/** A logger whose lines carry `parent`'s bindings and `bindings`, every key once; `component`
 *  nests as `outer/inner`. */
export function childLogger(parent: Logger, bindings: LogBindings): Logger {
  const lineage = lineages.get(parent) ?? { origin: parent, bindings: {} };
  const merged: LogBindings = { ...lineage.bindings };
  for (const [key, value] of Object.entries(bindings)) {
    if (value === undefined) continue;
    const outer = merged[key];
    merged[key] = key === 'component' && outer !== undefined ? `${outer}/${value}` : value;
  }
  // What the origin writes on every line (the app, its name, the pid) cannot be bound again: a child
  // of it would write it twice.
  const written = new Set([...WRITTEN_BY_THE_LOGGER, ...Object.keys(lineage.origin.bindings())]);
  const taken = Object.keys(merged).filter((key) => written.has(key));
  if (taken.length > 0) throw new Error(`log binding ${taken.join(', ')} is bound already by the logger this one is made from`);
  const logger = lineage.origin.child(merged);
  lineages.set(logger, { origin: lineage.origin, bindings: merged });
  return logger;
}
