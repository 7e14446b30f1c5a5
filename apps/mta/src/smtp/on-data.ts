// DATA: stream the message through the collector (size cap on the bytes, header cap on the header
// section, bare CR/LF refused, the bytes kept only while the edge's DATA memory budget has room), parse the header facts, prepend
// the trace header, remove the Authentication-Results fields that claim our name, and commit message + payload + deliveries in one transaction before answering
// "250 2.0.0 queued as <id>". The id is the message's one name: the trace header's "id", the reply,
// mail.messages.id, the API's Delivery.messageId and the `messageId` of every log line about it.
// The whole DATA phase has a deadline (MAIL_MTA_DATA_TIMEOUT) against senders that trickle a byte
// at a time to stay under the idle timeout. The deadline governs the RECEIVING of the bytes only: once the accept statement is sent, the
// reply is whatever the statement's outcome is (accept-message.ts), never a 421 while it may commit.
// The DATA phase is the `smtp accept` span of the session's trace (session-trace.ts); its context is
// stored with the message and its deliveries, so the engine's spans continue the same trace.
import { finished, type Readable, type Writable } from 'node:stream';
import type { Span } from '@opentelemetry/api';
import { ATTR, inSpan, isDiskFullDbError, storableTextOrNull, traceparentOf } from '@postern/shared';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { transactionFingerprint } from '../accept/accept-ledger.ts';
import { newMessageId, UndecidedAcceptError } from '../accept/accept-message.ts';
import { authenticateInbound } from '../auth/at-data.ts';
import { authservId } from '../auth/verdicts.ts';
import { countReceivedHeaders } from '../data/count-hops.ts';
import { forgedAuthResults, withoutFields } from '../data/forged-auth-results.ts';
import type { MemoryReservation } from '../data/memory-budget.ts';
import { MessageCollector } from '../data/message-collector.ts';
import { parseHeaderFacts } from '../data/parse-headers.ts';
import { receivedHeader } from '../data/received-header.ts';
import type { EdgeContext } from './edge-context.ts';
import {
  asReply,
  bareLineEnding,
  connectionLost,
  dataTimeout,
  type EdgeReply,
  headerTooLarge,
  insufficientStorage,
  messageTooLarge,
  storageFailed,
  storageFull,
  tooManyHops,
} from './replies.ts';

type DataCallback = (error?: Error | null, message?: string) => void;

/** The distinct targets of the accepted recipients, in first-seen order: one delivery each, so a
 *  person on two of the lists addressed gets one copy. */
export function expandTargets(targetsPerRecipient: readonly (readonly string[])[]): string[] {
  const seen = new Set<string>();
  for (const targets of targetsPerRecipient) for (const target of targets) seen.add(target);
  return [...seen];
}

/**
 * The DATA stream into the collector; rejects when either side fails or the stream closes before
 * its end (the connection went away). Not stream/promises' pipeline: that one aborts an internal
 * AbortController when it is done, which builds an AbortError with its stack for every message.
 */
function drainInto(source: Readable, sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error?: Error | null) => {
      if (settled) return;
      settled = true;
      if (error) {
        source.unpipe(sink);
        sink.destroy();
        reject(error);
      } else resolve();
    };
    finished(source, { writable: false }, (error) => {
      if (error) settle(error);
    });
    finished(sink, (error) => settle(error));
    source.pipe(sink);
  });
}

/** Set by the DATA deadline; the accept is not started after it (the sender was told 421). */
interface Deadline {
  passed: boolean;
}

async function receive(context: EdgeContext, stream: SMTPServerDataStream, session: SMTPServerSession, deadline: Deadline, span: Span): Promise<string> {
  // Claimed chunk by chunk while the bytes arrive, given back when this returns or throws: after
  // the commit, a refusal, a broken connection or the DATA deadline alike.
  const memory = context.dataMemory.reserve();
  try {
    return await receiveWithin(context, stream, session, memory, deadline, span);
  } finally {
    memory.release();
  }
}

async function receiveWithin(
  context: EdgeContext,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  memory: MemoryReservation,
  deadline: Deadline,
  span: Span,
): Promise<string> {
  const collector = new MessageCollector(context.limits.maxMessageSize, memory, context.limits.maxHeaderSize);
  try {
    await drainInto(stream, collector);
  } catch (error) {
    throw connectionLost(error);
  }
  const received = collector.verdict;
  if (received.oversize) throw messageTooLarge(context.limits.maxMessageSize);
  if (received.bareLineEnding) throw bareLineEnding();
  if (received.headerTooLarge) throw headerTooLarge(context.limits.maxHeaderSize);
  if (received.overBudget) throw insufficientStorage();

  const accepted = session.envelope.rcptTo.map((entry) => context.recipients.get(entry));
  if (accepted.some((recipient) => recipient === undefined)) {
    // Every envelope entry went through onRcptTo; a missing one is a bug, and 451 is the safe answer.
    throw storageFailed(new Error('a recipient of the envelope has no recorded lookup'));
  }
  const recipients = accepted as NonNullable<(typeof accepted)[number]>[];
  const envelopeTo = recipients.map((recipient) => recipient.address.address);
  const targets = expandTargets(recipients.map((recipient) => recipient.targets));
  const smtpUtf8 = session.envelope.smtpUtf8 === true;
  const bodyType = bodyTypeOf(session);
  // Inbound SPF/DKIM/DMARC/ARC (src/auth/) on the bytes as kept, before anything is stored: enforce
  // may refuse here; its Authentication-Results header goes on top of the trace header.
  const auth = await authenticateInbound(
    context.inboundAuth,
    collector.keptChunks(),
    { clientAddress: session.remoteAddress, helo: session.hostNameAppearsAs || null, envelopeFrom: envelopeFromAsReceived(session) },
    context.logger,
    session.id,
  );
  // One id from here on: the trace header names the message by the id it is stored under and
  // answered with (a retry answered from the ledger gets the first accept's id, whose stored
  // header names it too).
  const messageId = newMessageId();
  span.setAttribute(ATTR.messageId, messageId);
  const trace = receivedHeader({
    helo: session.hostNameAppearsAs || null,
    clientAddress: session.remoteAddress,
    edgeHostname: context.limits.hostname,
    esmtp: session.openingCommand === 'EHLO',
    tls: session.secure,
    smtpUtf8,
    messageId,
    recipients: envelopeTo,
    date: new Date(),
  });
  // What is stored: the trace header, then the bytes as received less the Authentication-Results
  // fields that claim our name (RFC 8601 5; with the policy off too); one copy, the chunks let go.
  const prefix = auth ? Buffer.concat([Buffer.from(auth.header, 'utf8'), trace]) : trace;
  const message = collector.takeMessage(prefix);
  const data = message.subarray(prefix.length);
  // Counted on what the sender sent; our own trace header is not a hop it made.
  if (countReceivedHeaders(data) > context.limits.maxHops) throw tooManyHops(context.limits.maxHops);
  const facts = parseHeaderFacts(data);
  const envelopeFrom = envelopeFromAsReceived(session);
  const fingerprint = transactionFingerprint({ envelopeFrom, envelopeTo, smtpUtf8, bodyType, data });
  // Last, as it rewrites the buffer in place: `data` is not read after this.
  const forged = forgedAuthResults(data, authservId(context.limits.hostname));
  const raw = withoutFields(message, prefix.length, forged);
  const started = performance.now();
  // Checked and marked in the same turn of the event loop: either the deadline answered 421 and
  // nothing is stored, or the accept is out and the deadline leaves the reply to it.
  if (deadline.passed) throw dataTimeout(context.limits.dataTimeoutMs);
  context.accepting.add(session.id);
  context.metrics.acceptsUndecided.inc();
  try {
    const stored = await context.accept(fingerprint, {
      id: messageId,
      envelopeFrom,
      envelopeTo,
      targets,
      clientAddress: session.remoteAddress || null,
      // Client-chosen text too (EHLO argument): made storable like the header facts.
      clientHostname: storableTextOrNull(session.clientHostname || null, { maxChars: 255 }),
      helo: storableTextOrNull(session.hostNameAppearsAs || null, { maxChars: 255 }),
      smtpUtf8,
      bodyType,
      messageIdHeader: facts.messageId,
      subject: facts.subject,
      fromHeader: facts.from,
      sizeBytes: received.size,
      raw,
      traceparent: traceparentOf(span),
      authResults: auth ? auth.value : null,
      authVerdicts: auth ? auth.verdicts : null,
    });
    context.metrics.acceptDuration.observe({ outcome: stored.duplicate ? 'duplicate' : 'committed' }, performance.now() - started);
    span.setAttributes({ [ATTR.messageId]: stored.messageId, 'postern.bytes': received.size, 'postern.deliveries': stored.deliveryIds.length, 'postern.duplicate': stored.duplicate });
    if (stored.duplicate) {
      context.metrics.duplicatesAnswered.inc();
      context.logger.warn({ session: session.id, messageId: stored.messageId }, 'same message again: answered with its first accept, not stored twice');
      return stored.messageId;
    }
    context.metrics.messagesAccepted.inc();
    context.metrics.bytesAccepted.inc(received.size);
    context.metrics.deliveriesCreated.inc(stored.deliveryIds.length);
    if (forged.length > 0) context.metrics.forgedAuthResultsRemoved.inc(forged.length);
    context.logger.info(
      {
        session: session.id,
        messageId: stored.messageId,
        bytes: received.size,
        deliveries: stored.deliveryIds.length,
        ...(forged.length > 0 ? { forgedAuthResultsRemoved: forged.length } : {}),
      },
      'message accepted',
    );
    return stored.messageId;
  } catch (error) {
    context.metrics.acceptDuration.observe({ outcome: error instanceof UndecidedAcceptError ? 'undecided' : 'failed' }, performance.now() - started);
    if (error instanceof UndecidedAcceptError) throw error;
    throw isDiskFullDbError(error) ? storageFull(error) : storageFailed(error);
  } finally {
    context.accepting.delete(session.id);
    context.metrics.acceptsUndecided.dec();
  }
}

/** BODY= as given at MAIL FROM (smtp-server validated it), or null when the sender gave none:
 *  smtp-server's envelope.bodyType says "7bit" for both, so the parameter itself is read. */
function bodyTypeOf(session: SMTPServerSession): '7bit' | '8bitmime' | null {
  const args = session.envelope.mailFrom ? session.envelope.mailFrom.args : undefined;
  const body = args && typeof args.BODY === 'string' ? args.BODY.toLowerCase() : null;
  return body === '7bit' || body === '8bitmime' ? body : null;
}

/** The reverse-path in the form received (smtp-server's keepAddressesAsReceived keeps an xn-- domain). */
function envelopeFromAsReceived(session: SMTPServerSession): string {
  return session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
}

export function onData(context: EdgeContext) {
  return (stream: SMTPServerDataStream, session: SMTPServerSession, callback: DataCallback): void => {
    context.inData.add(session.id);
    let answered = false;
    const answer = (error: EdgeReply | null, messageId?: string) => {
      if (answered) return;
      answered = true;
      clearTimeout(deadline);
      context.inData.delete(session.id);
      if (error) context.traces.refused(session, 'data', error.responseCode, error.reason);
      context.traces.answered(session, { code: error ? error.responseCode : 250, messageId: messageId ?? null });
      if (error) {
        context.metrics.rejections.inc({ stage: 'data', reason: error.reason });
        const level = error.isPermanent ? 'info' : 'warn';
        context.logger[level]({ session: session.id, reply: error.reply, err: error.cause }, 'message refused');
        callback(error);
      } else {
        callback(null, `2.0.0 queued as ${messageId}`);
      }
    };
    const receiving: Deadline = { passed: false };
    const deadline = setTimeout(() => {
      // Past the deadline with the accept already sent: its outcome decides the reply, not this.
      if (context.accepting.has(session.id)) return;
      receiving.passed = true;
      // 421 closes the connection; the half-received message is dropped, nothing was stored.
      const reply = dataTimeout(context.limits.dataTimeoutMs);
      context.replyAndClose(session, reply.responseCode, reply.message);
      stream.destroy();
      answer(reply);
    }, context.limits.dataTimeoutMs);
    deadline.unref();
    inSpan(
      'smtp accept',
      { attributes: { [ATTR.smtpSession]: session.id } },
      (span) => receive(context, stream, session, receiving, span),
      context.traces.context(session),
    ).then(
      (messageId) => answer(null, messageId),
      (error: unknown) => {
        if (error instanceof UndecidedAcceptError) {
          // The edge stopped with the commit undecided: no reply is true, so none is given.
          answered = true;
          clearTimeout(deadline);
          context.inData.delete(session.id);
          context.traces.answered(session, { code: null, messageId: error.messageId });
          context.logger.error({ session: session.id, messageId: error.messageId }, 'stopping with an accept undecided: closed without a reply');
          context.closeWithoutReply(session);
          return;
        }
        const reply = asReply(error, storageFailed);
        // After a smuggling attempt, whatever the client pipelined behind the refused message is
        // not trusted as commands: reply and disconnect, as Postfix does for a bare newline.
        if (reply.reason === 'bare_line_ending') context.replyAndClose(session, reply.responseCode, reply.message);
        answer(reply);
      },
    );
  };
}
