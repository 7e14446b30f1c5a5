// MAIL FROM: a new transaction. Refused while stopping (421, the client comes back later), past the
// client's message rate (451 4.7.1), or for a non-ASCII sender without SMTPUTF8 (553 5.6.7).
import { needsSmtpUtf8 } from '@postern/shared';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { EdgeContext } from './edge-context.ts';
import { asReply, type EdgeReply, rateLimited, shuttingDown, smtpUtf8Required } from './replies.ts';

function check(context: EdgeContext, address: SMTPServerAddress, session: SMTPServerSession): EdgeReply | null {
  if (context.isStopping()) return shuttingDown();
  const at = address.address.lastIndexOf('@');
  if (at > 0 && needsSmtpUtf8(address.address.slice(0, at)) && !session.envelope.smtpUtf8) {
    return smtpUtf8Required(address.address);
  }
  // Counted per transaction attempted, before anything costs a lookup.
  if (!context.rateLimiter.take(session.remoteAddress)) return rateLimited(context.limits.rateLimitPerMinute);
  return null;
}

export function onMailFrom(context: EdgeContext) {
  return (address: SMTPServerAddress, session: SMTPServerSession, callback: (error?: Error | null) => void): void => {
    let refusal: EdgeReply | null;
    try {
      refusal = check(context, address, session);
    } catch (error) {
      refusal = asReply(error);
    }
    if (refusal) {
      context.metrics.rejections.inc({ stage: 'mail', reason: refusal.reason });
      context.logger.info({ session: session.id, client: session.remoteAddress, reply: refusal.reply }, 'MAIL FROM refused');
    }
    callback(refusal);
  };
}
