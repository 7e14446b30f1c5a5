// The engine's first span in a delivery's trace: its claim. Deliveries are claimed in batches by
// one statement, outside any trace (a poll that claims nothing must not be a trace of its own), so
// each claimed delivery gets its `delivery claim` span afterwards, with the statement's start and
// end, under the trace context stored with it — the edge's accept, the producer's command, the
// sendEmail caller's request: the same trace, whichever engine claims it and however much later.
// The attempt that follows is the claim's child (attempt-worker.ts), so a delivery stored without
// a context still gets one trace per attempt. With tracing off (or the claim not sampled) the
// deliveries pass through as they are.
import { SpanKind } from '@opentelemetry/api';
import { ATTR, type ClaimedDelivery, contextOf, posternTracer, traceparentOf, tracingActive } from '@postern/shared';

/** The claimed deliveries, each carrying its claim span's context as the one its attempt continues. */
export function traceClaims(claimed: readonly ClaimedDelivery[], claim: { startedAt: number; endedAt: number; workerId: string }): ClaimedDelivery[] {
  // Off, no span would record: the deliveries as they are, without a shell and its attributes each.
  if (!tracingActive()) return [...claimed];
  const tracer = posternTracer();
  return claimed.map((delivery) => {
    const span = tracer.startSpan(
      'delivery claim',
      {
        kind: SpanKind.CONSUMER,
        startTime: claim.startedAt,
        attributes: {
          [ATTR.deliveryId]: delivery.id,
          [ATTR.attempt]: delivery.attempt_count,
          [ATTR.workerId]: claim.workerId,
          'postern.claim.batch_size': claimed.length,
          ...(delivery.message_id ? { [ATTR.messageId]: delivery.message_id } : {}),
        },
      },
      contextOf(delivery.traceparent),
    );
    const recording = span.isRecording();
    span.end(claim.endedAt);
    return recording ? { ...delivery, traceparent: traceparentOf(span) } : delivery;
  });
}
