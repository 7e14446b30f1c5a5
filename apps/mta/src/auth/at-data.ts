// The edge's one call into inbound authentication, after the final dot and before the accept:
// evaluate (inbound-auth.ts), log, and decide (decision.ts). Returns what to record with the
// message, or throws the refusal enforce chose; null when MAIL_INBOUND_AUTH_POLICY is off.
import type { Logger } from '@postern/shared';
import { decide, type InboundAuthPolicy, replyFor } from './decision.ts';
import type { InboundAuth, SessionFacts } from './inbound-auth.ts';
import type { InboundAuthResult } from './verdicts.ts';

export interface InboundAuthStep {
  policy: InboundAuthPolicy;
  evaluate: InboundAuth;
}

export async function authenticateInbound(
  step: InboundAuthStep | null,
  message: readonly Buffer[],
  session: SessionFacts,
  logger: Logger,
  sessionId: string,
): Promise<InboundAuthResult | null> {
  if (step === null || step.policy === 'off') return null;
  const result = await step.evaluate(message, session);
  const decision = decide(step.policy, result.verdicts);
  const { verdicts } = result;
  logger.debug(
    { session: sessionId, spf: verdicts.spf, dkim: verdicts.dkim.map((signature) => signature.result), dmarc: verdicts.dmarc, dmarcPolicy: verdicts.dmarcPolicy, arc: verdicts.arc, decision },
    'inbound authentication',
  );
  const refusal = replyFor(decision, verdicts);
  if (refusal) throw refusal;
  return result;
}
