// A line logged inside a span carries the span's ids, under the SDK as a Postern process starts it;
// a line outside any span carries none.
import { Writable } from 'node:stream';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inSpan } from '../tracing/trace-context.ts';
import { createLogger } from './logger.ts';

function capture(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('log lines and traces', () => {
  const sdk = new NodeSDK({
    traceExporter: { export: (_spans, done) => done({ code: 0 }), shutdown: async () => {} },
    metricReaders: [],
    logRecordProcessors: [],
    autoDetectResources: false,
  });
  beforeAll(() => sdk.start());
  afterAll(() => sdk.shutdown());

  it('a line logged inside a span carries otel_trace_id and otel_span_id; one outside, neither', async () => {
    const { lines, stream } = capture();
    const logger = createLogger('test', 'info', { destination: stream }).child({ component: 'unit' });
    logger.info('before');
    const ids = await inSpan('work', {}, async (span) => {
      await new Promise((resolve) => setImmediate(resolve));
      logger.info({ deliveryId: 'd1' }, 'inside');
      return span.spanContext();
    });
    logger.info('after');
    expect(lines.map((line) => [line.msg, line.otel_trace_id, line.otel_span_id])).toEqual([
      ['before', undefined, undefined],
      ['inside', ids.traceId, ids.spanId],
      ['after', undefined, undefined],
    ]);
  });
});
