// RCPT TO: the live lookup, one per recipient, answered 250 2.1.5 / 550 5.1.1 / 451 4.3.0 /
// 554 5.7.1 / 452 4.5.3 (see recipients/verify-recipient.ts and replies.ts for why each). Before
// any lookup: the transaction's RCPT command cap (every RCPT counts, repeated and refused ones
// included) and a free lookup slot for the client's network (LookupSlots). A repeated
// address is looked up again, like any other: the answer must be the live one (stale-alias-table: an alias
// disabled between two RCPTs of one session is refused on the second), and the cap bounds what a
// harvest of repeats can cost.
import { context as otelContext } from '@opentelemetry/api';
import { clientNetworkKey } from '@postern/shared';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { verifyRecipient } from '../recipients/verify-recipient.ts';
import type { EdgeContext } from './edge-context.ts';
import { RCPT_PARAMETERS, unknownParameter } from './esmtp-parameters.ts';
import { asReply, type EdgeReply, lookupBusy, tooManyRcptCommands, tooManyRecipients, unsupportedParameter } from './replies.ts';


/** Past the limit unless it repeats an address already accepted (smtp-server replaces those). */
function overLimit(session: SMTPServerSession, address: SMTPServerAddress, limit: number): boolean {
  const accepted = session.envelope.rcptTo;
  if (accepted.length < limit) return false;
  const wanted = address.address.toLowerCase();
  return !accepted.some((entry) => entry.address.toLowerCase() === wanted);
}

/** Counts this RCPT against the transaction's cap; false once past it. */
function countRcpt(context: EdgeContext, session: SMTPServerSession): boolean {
  const envelope = session.envelope as object;
  const seen = (context.rcptCommands.get(envelope) ?? 0) + 1;
  context.rcptCommands.set(envelope, seen);
  return seen <= context.limits.maxRcptCommands;
}

export function onRcptTo(context: EdgeContext) {
  const { metrics, limits } = context;
  return (address: SMTPServerAddress, session: SMTPServerSession, callback: (error?: Error | null) => void): void => {
    const done = (error: EdgeReply | null) => {
      metrics.rcptOutcomes.inc(
        error
          ? { code: String(error.responseCode), enhanced: error.enhancedCode, reason: error.reason }
          : { code: '250', enhanced: '2.1.5', reason: 'accepted' },
      );
      if (error) {
        context.traces.refused(session, 'rcpt', error.responseCode, error.reason);
        metrics.rejections.inc({ stage: 'rcpt', reason: error.reason });
        const level = error.isPermanent ? 'info' : 'warn';
        context.logger[level]({ session: session.id, rcpt: address.address, reply: error.reply, err: error.cause }, 'RCPT TO refused');
      }
      callback(error);
    };
    if (!countRcpt(context, session)) {
      done(tooManyRcptCommands(limits.maxRcptCommands));
      return;
    }
    const unknown = unknownParameter(address, RCPT_PARAMETERS);
    if (unknown !== null) {
      done(unsupportedParameter(unknown));
      return;
    }
    if (overLimit(session, address, limits.maxRecipients)) {
      done(tooManyRecipients(limits.maxRecipients));
      return;
    }
    // In the session's trace: the lookup statement is a span of the message it is for.
    otelContext.with(context.traces.context(session), () => lookUp(context, address, session)).then(
      () => done(null),
      (error: unknown) => done(asReply(error)),
    );
  };
}

async function lookUp(context: EdgeContext, address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
  const { metrics, limits } = context;
  const release = await context.lookupSlots.acquire(clientNetworkKey(session.remoteAddress), limits.lookupTimeoutMs);
  if (!release) throw lookupBusy(limits.clientLookupConcurrency);
  const started = performance.now();
  let lookedUp = false;
  const observe = (outcome: 'found' | 'not_found' | 'failed') => {
    if (lookedUp) metrics.lookupDuration.observe({ outcome }, performance.now() - started);
  };
  try {
    const recipient = await verifyRecipient(address.address, {
      smtpUtf8: session.envelope.smtpUtf8 === true,
      lookupTimeoutMs: limits.lookupTimeoutMs,
      srs: context.srs ?? undefined,
      resolve: (normalized) => {
        lookedUp = true;
        return context.resolve(normalized);
      },
    });
    observe('found');
    context.recipients.set(address, recipient);
  } catch (error) {
    observe(asReply(error).reason === 'lookup_failed' ? 'failed' : 'not_found');
    throw error;
  } finally {
    release();
  }
}
