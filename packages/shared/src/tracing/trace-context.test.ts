// The trace context Postern stores and passes on, with no SDK started: what a process with tracing
// off does with a traceparent it was given (passes it through) and one it was not (none).
import { context, INVALID_SPAN_CONTEXT, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { contextOf, currentTraceparent, inSpan, isTraceparent, normalizedTraceparent, traceparentOf, tracingActive } from './trace-context.ts';

const stored = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent', () => {
  it('is read in any version W3C allows and stored as version 00', () => {
    expect(isTraceparent(stored)).toBe(true);
    expect(normalizedTraceparent(stored)).toBe(stored);
    expect(normalizedTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future-field')).toBe(stored);
    expect(normalizedTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00')).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00');
  });

  it.each([
    ['ids all zero', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['parent all zero', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['upper case', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'],
    ['version 00 with more fields', `${stored}-extra`],
    ['short', '00-4bf92f35-00f067aa-01'],
  ])('is not one with %s', (_case, value) => {
    expect(isTraceparent(value)).toBe(false);
    expect(normalizedTraceparent(value)).toBeNull();
  });

  it('with tracing off, a span under a stored context keeps naming that context; without one, nothing', async () => {
    expect(traceparentOf(trace.getSpan(contextOf(stored)))).toBe(stored);
    const seen = await inSpan('work', {}, async (span) => traceparentOf(span), contextOf(stored));
    expect(seen).toBe(stored);
    expect(await inSpan('work', {}, async (span) => traceparentOf(span), contextOf(null))).toBeNull();
    expect(context.with(contextOf(stored), currentTraceparent)).toBeNull();
  });

  it('a failure in a span is thrown on', async () => {
    await expect(inSpan('work', {}, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });

  it('makes no span while no tracer provider is registered, and goes through the registered one once there is', async () => {
    expect(tracingActive()).toBe(false);
    const started: string[] = [];
    const shell = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    trace.setGlobalTracerProvider({
      getTracer: () => ({
        startSpan: (name) => {
          started.push(name);
          return shell;
        },
        startActiveSpan: ((name: string, _options: unknown, _parent: unknown, fn: (span: unknown) => unknown) => {
          started.push(name);
          return fn(shell);
        }) as never,
      }),
    });
    try {
      expect(tracingActive()).toBe(true);
      await inSpan('recorded work', {}, async () => 1);
      expect(started).toEqual(['recorded work']);
    } finally {
      trace.disable();
    }
    expect(tracingActive()).toBe(false);
  });
});
