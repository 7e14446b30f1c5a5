// The edge's part of a message's trace. One trace per message: a `smtp session` span covers the
// part of an SMTP session that led to one message — from the connection (or, for a later message
// on the same connection, its MAIL FROM) to the reply to its DATA — so a session that sends three
// messages is three traces, each starting with how its message arrived. Refused commands are
// events of it; the recipient lookups' statements and the `smtp accept` span (on-data.ts) are its
// children. The accept span's context is stored with the message and its deliveries, and the
// engine continues it (docs/observability.md). With tracing off every span here is the API's
// no-op: a WeakMap entry per connection is all it costs.
import { type Context, ROOT_CONTEXT, type Span, SpanKind, trace } from '@opentelemetry/api';
import { ATTR, posternTracer } from '@postern/shared';
import type { SMTPServerSession } from 'smtp-server';

export class SessionTraces {
  readonly #open = new WeakMap<SMTPServerSession, Span>();

  /** The span of the session's current part, started if the last one ended with its message. */
  #current(session: SMTPServerSession): Span {
    let span = this.#open.get(session);
    if (!span) {
      span = posternTracer().startSpan(
        'smtp session',
        {
          kind: SpanKind.SERVER,
          attributes: {
            'network.protocol.name': 'smtp',
            'client.address': session.remoteAddress,
            'client.port': session.remotePort,
            [ATTR.smtpSession]: session.id,
          },
        },
        ROOT_CONTEXT,
      );
      this.#open.set(session, span);
    }
    return span;
  }

  /** A connection opened, or a new transaction began after a message was answered. */
  begin(session: SMTPServerSession): void {
    this.#current(session);
  }

  /** The context the session's hooks run in: their statements and spans belong to its trace. */
  context(session: SMTPServerSession): Context {
    return trace.setSpan(ROOT_CONTEXT, this.#current(session));
  }

  /** A refused command, with the reply the client got. */
  refused(session: SMTPServerSession, stage: 'mail' | 'rcpt' | 'data', code: number, reason: string): void {
    this.#open.get(session)?.addEvent('smtp refusal', { stage, [ATTR.smtpReplyCode]: code, reason });
  }

  /** The DATA reply was given (code null: none could be, the edge stopped with the accept
   *  undecided): this part of the session, and its trace, ends with its message. */
  answered(session: SMTPServerSession, reply: { code: number | null; messageId: string | null }): void {
    const span = this.#open.get(session);
    if (!span) return;
    this.#open.delete(session);
    span.setAttribute('postern.smtp.helo', session.hostNameAppearsAs || '');
    span.setAttribute('postern.smtp.tls', session.secure === true);
    if (reply.code !== null) span.setAttribute(ATTR.smtpReplyCode, reply.code);
    if (reply.messageId) span.setAttribute(ATTR.messageId, reply.messageId);
    span.end();
  }

  /** The connection closed: a part with no message ends here. */
  closed(session: SMTPServerSession): void {
    const span = this.#open.get(session);
    if (!span) return;
    this.#open.delete(session);
    span.setAttribute('postern.smtp.helo', session.hostNameAppearsAs || '');
    span.end();
  }
}
