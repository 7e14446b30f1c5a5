// MAIL FROM: a new transaction. Refused while stopping (421, the client comes back later), past the
// client's message rate (451 4.7.1), for a non-ASCII sender without SMTPUTF8 (553 5.6.7), when a
// declared SIZE= does not fit (552 5.3.4 over the maximum, 452 4.3.1 over what the memory budget
// has left now), or for a parameter of an extension the edge does not offer (555 5.5.4).
import { needsSmtpUtf8, textProblem } from '@postern/shared';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { EdgeContext } from './edge-context.ts';
import { MAIL_PARAMETERS, unknownParameter } from './esmtp-parameters.ts';
import {
  asReply,
  badSender,
  type EdgeReply,
  insufficientStorage,
  messageTooLarge,
  rateLimited,
  shuttingDown,
  smtpUtf8Required,
  unsupportedParameter,
} from './replies.ts';


/** RFC 1870 SIZE=, when declared. A hint only: the bytes are counted in DATA whatever it says. */
function declaredSize(address: SMTPServerAddress): number | null {
  const size = address.args ? address.args.SIZE : undefined;
  return typeof size === 'string' && /^\d{1,20}$/.test(size) ? Number(size) : null;
}

function check(context: EdgeContext, address: SMTPServerAddress, session: SMTPServerSession): EdgeReply | null {
  if (context.isStopping()) return shuttingDown();
  const unknown = unknownParameter(address, MAIL_PARAMETERS);
  if (unknown !== null) return unsupportedParameter(unknown);
  // Stored as envelope_from and relayed as is: decided here, once (RFC 5321 4.5.3.1.3 allows 256
  // octets for a path; 320 leaves room for a UTF-8 local part). smtp-server's own parser already
  // refuses NUL and controls with the same 501 5.1.7; this keeps the rule ours.
  const problem = textProblem(address.address, 320);
  if (problem) return badSender(problem);
  const at = address.address.lastIndexOf('@');
  if (at > 0 && needsSmtpUtf8(address.address.slice(0, at)) && !session.envelope.smtpUtf8) {
    return smtpUtf8Required(address.address);
  }
  const size = declaredSize(address);
  // smtp-server refuses a SIZE over the advertised maximum before this hook; kept here so the
  // rule does not depend on it.
  if (size !== null && size > context.limits.maxMessageSize) return messageTooLarge(context.limits.maxMessageSize);
  // Nothing is reserved on the strength of the declaration: it only spares a sender the upload
  // of a message that could not be kept now.
  if (size !== null && size > context.dataMemory.availableBytes) return insufficientStorage();
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
    // A transaction after an answered message starts that message's own trace.
    context.traces.begin(session);
    if (refusal) {
      context.traces.refused(session, 'mail', refusal.responseCode, refusal.reason);
      context.metrics.rejections.inc({ stage: 'mail', reason: refusal.reason });
      context.logger.info({ session: session.id, client: session.remoteAddress, reply: refusal.reply }, 'MAIL FROM refused');
    }
    callback(refusal);
  };
}
