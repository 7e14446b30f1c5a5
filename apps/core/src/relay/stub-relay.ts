// MAIL_SMTP_MODE=stub (the operators' runbook's stub mode, no-health-endpoints): nothing leaves the machine. Auth-session deliveries
// never reach a relay at all (the attempt worker ends them `suppressed`); anything else is accepted
// here with a 250 that says it was not transmitted, so the rest of the pipeline (claim, render,
// attempt row, status) runs exactly as in production — except composing the MIME bytes nobody
// reads (discardsMessages), which cost more CPU than everything else of a stub attempt.
import type { OutboundMessage, Relay, SendResult } from './relay.ts';

export function createStubRelay(): Relay {
  return {
    name: 'stub',
    discardsMessages: true,
    async send(_message: OutboundMessage): Promise<SendResult> {
      return { ok: true, reply: { code: 250, enhanced: '2.0.0', text: 'stub mode: accepted, not transmitted' } };
    },
    interrupt() {},
    async close() {},
  };
}
