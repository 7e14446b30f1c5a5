// Inbound authentication as operators watch it: every verdict by method (one per DKIM signature),
// and how long evaluations take, by whether they finished by themselves. Refusals are counted with
// every other refusal (mail_mta_rejections_total, reasons dmarc_reject and auth_unsure).
import { prometheus, type Registry } from '@postern/shared';
import type { InboundAuthResult } from './verdicts.ts';

export interface InboundAuthMetrics {
  observe(result: InboundAuthResult, durationMs: number): void;
}

const MS_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

export function createInboundAuthMetrics(registry: Registry): InboundAuthMetrics {
  const results = new prometheus.Counter({
    name: 'mail_mta_inbound_auth_results_total',
    help: 'Inbound SPF, DKIM (per signature), DMARC and ARC verdicts, by method and result (RFC 8601 keyword)',
    labelNames: ['method', 'result'],
    registers: [registry],
  });
  const duration = new prometheus.Histogram({
    name: 'mail_mta_inbound_auth_duration_ms',
    help: 'One message\'s inbound authentication in ms, by outcome (complete; deadline: MAIL_INBOUND_AUTH_TIMEOUT passed; error: mailauth threw)',
    labelNames: ['outcome'],
    buckets: MS_BUCKETS,
    registers: [registry],
  });
  return {
    observe({ verdicts }, durationMs) {
      results.inc({ method: 'spf', result: verdicts.spf });
      for (const signature of verdicts.dkim) results.inc({ method: 'dkim', result: signature.result });
      results.inc({ method: 'dmarc', result: verdicts.dmarc });
      results.inc({ method: 'arc', result: verdicts.arc });
      duration.observe({ outcome: verdicts.incomplete ?? 'complete' }, durationMs);
    },
  };
}
