// What MAIL_INBOUND_AUTH_POLICY makes of the verdicts. annotate (and off) never refuse. enforce
// refuses only what the From domain asked to be refused (DMARC p=reject, after sp/np and t=y) and
// only when the failure is certain: every check DMARC depends on gave an answer. DMARC fails when
// neither SPF nor a DKIM signature passes aligned, and a temperror of either may be the pass that
// was missed, so mailauth's dmarc=fail next to a temperror is not a verdict; a dmarc=temperror
// means the policy itself is unknown. Both are answered with a 4xx (the sender retries), never
// a 5xx (stale-alias-table, docs/incidents.md: unsure is not no).
import { EdgeReply } from '../smtp/replies.ts';
import type { AuthVerdicts } from './verdicts.ts';

export type InboundAuthPolicy = 'annotate' | 'enforce' | 'off';

export type AuthDecision = 'accept' | 'reject' | 'defer';

export function decide(policy: InboundAuthPolicy, verdicts: AuthVerdicts): AuthDecision {
  if (policy !== 'enforce') return 'accept';
  if (verdicts.dmarc === 'temperror') return 'defer';
  if (verdicts.dmarc !== 'fail' || verdicts.dmarcPolicy !== 'reject') return 'accept';
  const unsure = verdicts.spf === 'temperror' || verdicts.dkim.some((signature) => signature.result === 'temperror');
  return unsure ? 'defer' : 'reject';
}

// 550 5.7.1: the From domain's DMARC policy is reject and the message certainly fails it (RFC 7489
// 6.6.3 / RFC 9989: reject during the SMTP transaction; RFC 3463 X.7.1: delivery not authorized).
export const dmarcRejected = (domain: string | null) =>
  new EdgeReply(
    550,
    '5.7.1',
    `Message refused: it fails the DMARC policy (p=reject) of ${domain ?? 'its From domain'}: no aligned SPF or DKIM pass`,
    'dmarc_reject',
  );

// 451 4.7.0: a DNS failure or the deadline left the verdict unsure (RFC 3463 X.7.0: security or
// policy status, for now); the sender retries.
export const authUnsure = () =>
  new EdgeReply(451, '4.7.0', 'Temporary failure checking the sender (SPF/DKIM/DMARC), try again later', 'auth_unsure');

/** The refusal for a decision, or null to accept. */
export function replyFor(decision: AuthDecision, verdicts: AuthVerdicts): EdgeReply | null {
  if (decision === 'reject') return dmarcRejected(verdicts.dmarcDomain);
  if (decision === 'defer') return authUnsure();
  return null;
}
