// RCPT TO: the live lookup, one per recipient, answered 250 2.1.5 / 550 5.1.1 / 451 4.3.0 /
// 554 5.7.1 / 452 4.5.3 (see recipients/verify-recipient.ts and replies.ts for why each).
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { verifyRecipient } from '../recipients/verify-recipient.ts';
import type { EdgeContext } from './edge-context.ts';
import { asReply, tooManyRecipients } from './replies.ts';

/** Past the limit unless it repeats an address already accepted (smtp-server replaces those). */
function overLimit(session: SMTPServerSession, address: SMTPServerAddress, limit: number): boolean {
  const accepted = session.envelope.rcptTo;
  if (accepted.length < limit) return false;
  const wanted = address.address.toLowerCase();
  return !accepted.some((entry) => entry.address.toLowerCase() === wanted);
}

export function onRcptTo(context: EdgeContext) {
  const { metrics, limits } = context;
  return (address: SMTPServerAddress, session: SMTPServerSession, callback: (error?: Error | null) => void): void => {
    const done = (error: ReturnType<typeof asReply> | null) => {
      metrics.rcptOutcomes.inc(
        error
          ? { code: String(error.responseCode), enhanced: error.enhancedCode, reason: error.reason }
          : { code: '250', enhanced: '2.1.5', reason: 'accepted' },
      );
      if (error) {
        metrics.rejections.inc({ stage: 'rcpt', reason: error.reason });
        const level = error.isPermanent ? 'info' : 'warn';
        context.logger[level]({ session: session.id, rcpt: address.address, reply: error.reply, err: error.cause }, 'RCPT TO refused');
      }
      callback(error);
    };
    if (overLimit(session, address, limits.maxRecipients)) {
      done(tooManyRecipients(limits.maxRecipients));
      return;
    }
    const started = performance.now();
    let lookedUp = false;
    const observe = (outcome: 'found' | 'not_found' | 'failed') => {
      if (lookedUp) metrics.lookupDuration.observe({ outcome }, performance.now() - started);
    };
    verifyRecipient(address.address, {
      smtpUtf8: session.envelope.smtpUtf8 === true,
      lookupTimeoutMs: limits.lookupTimeoutMs,
      resolve: (normalized) => {
        lookedUp = true;
        return context.resolve(normalized);
      },
    }).then(
      (recipient) => {
        observe('found');
        context.recipients.set(address, recipient);
        done(null);
      },
      (error: unknown) => {
        const reply = asReply(error);
        observe(reply.reason === 'lookup_failed' ? 'failed' : 'not_found');
        done(reply);
      },
    );
  };
}
