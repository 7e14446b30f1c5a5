// W3C trace context (traceparent) as Postern stores and passes it: one message is one trace from
// the edge's SMTP session to the relay's reply, even when the attempt runs hours later on another
// engine, because the context travels with the data — a `traceparent` column on mail.messages and
// mail.deliveries, a `traceparent` field on a stream command, the caller's HTTP header for
// sendEmail. Only the traceparent is kept (no tracestate), always in version 00 form.
//
// Everything here goes through @opentelemetry/api, whose calls are no-ops until a process started
// the SDK (process/start-tracing.ts): with tracing off a span is a non-recording shell, the active
// context is always empty, and a stored or received traceparent still passes through unchanged,
// so the column keeps naming the caller's trace.
import {
  type Context,
  context,
  defaultTextMapSetter,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { parseTraceParent, W3CTraceContextPropagator } from '@opentelemetry/core';

const w3c = new W3CTraceContextPropagator();

/** The one tracer of Postern's own spans (the instrumentations have theirs). */
export function posternTracer(): Tracer {
  return trace.getTracer('postern');
}

/** Whether spans are recorded at all: a tracer provider is registered (the SDK, started by
 *  process/start-tracing.ts, or a test's own). Without one every span is a no-op shell, and the hot
 *  paths skip making them (the engine's claim and attempt spans cost measurably even as shells). */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer('postern') !== undefined;
}

/** Runs `work` in a new span of Postern's tracer, active for everything `work` awaits (the
 *  instrumented statements it runs become its children); a throw marks the span failed. The
 *  parent is the active span, or `parent` (a stored traceparent's context). */
export function inSpan<T>(name: string, options: SpanOptions, work: (span: Span) => Promise<T>, parent: Context = context.active()): Promise<T> {
  if (!tracingActive()) {
    // What the no-op tracer would give, without making it: a shell carrying the parent's context,
    // so a stored or received traceparent still passes through (traceparentOf).
    return work(trace.wrapSpanContext(trace.getSpanContext(parent) ?? INVALID_SPAN_CONTEXT));
  }
  return posternTracer().startActiveSpan(name, options, parent, async (span) => {
    try {
      return await work(span);
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** A traceparent Postern can continue: well formed, ids not all zero. Any version W3C allows is
 *  read (its first four fields); what is stored is version 00. */
export function isTraceparent(value: string): boolean {
  const parsed = parseTraceParent(value);
  return parsed !== null && isSpanContextValid(parsed);
}

/** The version 00 traceparent of `span`, or null for a span with no valid context (tracing off and
 *  no parent). */
export function traceparentOf(span: Span | undefined): string | null {
  if (!span) return null;
  const carrier: { traceparent?: string } = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier.traceparent ?? null;
}

/** The traceparent of the span active now, or null. */
export function currentTraceparent(): string | null {
  return traceparentOf(trace.getSpan(context.active()));
}

/** A context whose parent is the stored or received `traceparent`; the empty context (a new trace)
 *  when there is none or it does not parse. */
export function contextOf(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  const parsed = parseTraceParent(traceparent);
  if (!parsed || !isSpanContextValid(parsed)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, { ...parsed, isRemote: true });
}

/** `traceparent` in the version 00 form that is stored, or null when it is not one. */
export function normalizedTraceparent(traceparent: string | null | undefined): string | null {
  const parent = trace.getSpanContext(contextOf(traceparent));
  return parent ? traceparentOf(trace.wrapSpanContext(parent)) : null;
}
