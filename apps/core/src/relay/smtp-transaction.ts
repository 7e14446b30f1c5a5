// What both SMTP relays (smtp-relay.ts through one relay, mx-relay.ts to each domain's MX hosts) do
// the same way once a session is open: the transaction itself (MAIL FROM, RCPT TO, DATA) on a
// nodemailer SMTPConnection, the whole-send deadline, the RSET before a session is used again, and
// how nodemailer's errors become a SendFailure.
// A pooled connection the server closed while it was idle (its idle timeout, a restart), its close
// not seen yet or seen only after the RSET that proved it alive, fails the next transaction before
// a single reply: lostBeforeAnyReply says so, and both relays then send that message once more on
// a fresh connection rather than fail it (Postfix replaces a cached connection found dead the same
// way). Without a reply to MAIL FROM the server cannot have taken the message.
// The message stream is only read once the server answered 354, so the engine knows whether the
// message had been handed over when something broke: a timeout after that point may have
// delivered the mail and is recorded as outcome_unknown (classify-reply.ts).
// Slow is not stalled: every chunk of the message taken by the socket is reported as progress
// (the worker beats its heartbeat). A peer that keeps the socket busy without ever finishing — a
// multi-line reply trickled one line every 2 s resets nodemailer's socketTimeout forever — is cut
// by the whole-send deadline (MAIL_SMTP_SEND_DEADLINE): the send ends as a timeout,
// outcome_unknown if the data was out.
import { Readable } from 'node:stream';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import { relayEnvelope } from './mail-from-extensions.ts';
import { isWellFormedReply, type OutboundMessage, parseReply, type SendFailure, type SendResult, type SmtpStage, STAGE_NAMES } from './relay.ts';

export interface NodemailerError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
  /** The command the reply answered, as nodemailer names it: 'MAIL FROM', 'RCPT TO', 'DATA' (the
   *  DATA command and the end of data alike), 'EHLO', 'CONN'... */
  command?: string;
}

/** The step a failure came at. nodemailer names the DATA command and the end of data both 'DATA':
 *  the end of data is a message failure (EMESSAGE), or any failure once the data went out. 'CONN'
 *  (the greeting, the connection, a malformed reply) names no step. */
export function stageOf(error: NodemailerError, dataSent: boolean): SmtpStage | undefined {
  if (dataSent || (error.code === 'EMESSAGE' && error.command === 'DATA')) return 'end_of_data';
  switch (error.command) {
    case 'MAIL FROM':
      return 'mail';
    case 'RCPT TO':
      return 'rcpt';
    case 'DATA':
      return 'data';
    case 'EHLO':
    case 'HELO':
    case 'LHLO':
    case 'STARTTLS':
      return 'session';
    default:
      return error.command?.startsWith('AUTH') ? 'session' : undefined;
  }
}

export function failureOf(error: NodemailerError, dataSent: boolean, interrupted: boolean): SendFailure {
  // A reply that is not one (RFC 5321 4.2.1) is no refusal and no acceptance: the failure has no
  // reply (a protocol error, retried), and after the data went out its outcome is unknown.
  // nodemailer reports it as EPROTOCOL "Malformed reply: why" (strictReplies, patches/); a
  // malformed reply in any other error is caught here too.
  const malformed = (error.code === 'EPROTOCOL' && error.message.startsWith('Malformed reply')) || (error.response !== undefined && !isWellFormedReply(error.response));
  const stage = stageOf(error, dataSent);
  if (malformed) {
    const response = error.response ?? '';
    const why = /^Malformed reply: (.*?)(?::|$)/.exec(error.message)?.[1] ?? 'not an SMTP reply';
    const at = stage ? ` to ${STAGE_NAMES[stage]}` : '';
    const message = `EPROTOCOL: Malformed reply${at} (${why}): ${JSON.stringify(response.slice(0, 200))}`;
    // The connection is closed on it, as on any broken connection (a site's or relay's backoff counts it).
    return { kind: 'connection', reply: null, ...(stage ? { stage } : {}), category: 'malformed_reply', dataSent, interrupted, message: message.slice(0, 1_000) };
  }
  const reply = error.responseCode ? parseReply(error.response ?? `${error.responseCode} ${error.message}`) : null;
  let kind: SendFailure['kind'] = 'other';
  if (reply?.code) kind = 'reply';
  else if (error.code === 'ETIMEDOUT') kind = 'timeout';
  else if (['ECONNECTION', 'ESOCKET', 'EDNS', 'ECONNREFUSED', 'ECONNRESET', 'ETLS', 'EPROTOCOL'].includes(error.code ?? '')) kind = 'connection';
  return { kind, reply, ...(stage ? { stage } : {}), dataSent, interrupted, message: `${error.code ?? 'ERROR'}: ${error.message}`.slice(0, 1_000) };
}

/** The result of a transaction the server accepted. */
export function sentResult(response: string | null): Extract<SendResult, { ok: true }> {
  const reply = parseReply(response ?? '250 OK');
  return { ok: true, reply: reply ?? { code: 250, enhanced: null, text: 'OK' } };
}

export interface SendDeadline {
  /** Rejects once the deadline passed; only for racing against (it is never unhandled). */
  readonly passing: Promise<never>;
  passed(): boolean;
  /** How a send the deadline cut ends. */
  failure(dataSent: boolean): SendResult;
  clear(): void;
}

/** The whole-send deadline: past it, onPass closes whatever connection the send holds. */
export function startSendDeadline(ms: number, peer: string, onPass: () => void): SendDeadline {
  let passed = false;
  let reject: (error: Error) => void = () => {};
  const passing = new Promise<never>((_, rejectWith) => {
    reject = rejectWith;
  });
  passing.catch(() => {});
  const timer = setTimeout(() => {
    passed = true;
    onPass();
    reject(new Error(`whole-send deadline of ${ms} ms passed`));
  }, ms);
  return {
    passing,
    passed: () => passed,
    failure: (dataSent) => ({
      ok: false,
      failure: {
        kind: 'timeout',
        reply: null,
        dataSent,
        interrupted: false,
        message: `ETIMEDOUT: whole-send deadline of ${ms} ms passed (${peer} kept the connection busy without finishing)`,
      },
    }),
    clear: () => clearTimeout(timer),
  };
}

/**
 * RSET on an open session (a pooled connection before reuse, or one whose transaction was refused):
 * true when the server answered 2xx within timeoutMs. Bounded and settled by the connection's end,
 * because nodemailer drops the callbacks of commands still waiting for a reply when a connection
 * closes: a relay that refused with 550 and then closed, or fell silent, left an unbounded RSET
 * waiting for ever, and the send with it.
 */
export function resetSession(connection: SMTPConnection, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      connection.off('end', onEnd);
      resolve(ok);
    };
    const onEnd = () => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    connection.once('end', onEnd);
    try {
      connection.reset((error) => finish(!error));
    } catch {
      finish(false);
    }
  });
}

/** Message bytes are handed to the socket in chunks of this size; each one taken is progress. */
const DATA_CHUNK_BYTES = 64 * 1024;

function chunksOf(raw: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < raw.length; offset += DATA_CHUNK_BYTES) chunks.push(raw.subarray(offset, offset + DATA_CHUNK_BYTES));
  return chunks.length > 0 ? chunks : [raw];
}

export interface TransactionOutcome {
  error: NodemailerError | null;
  response: string | null;
  /** The whole message had been taken by the connection. */
  dataSent: boolean;
  /** The server sent something (a reply line, or part of one) during the transaction. */
  heard: boolean;
}

/** The connection was lost (closed or reset by the peer), as nodemailer reports it. */
function isConnectionLoss(error: NodemailerError): boolean {
  return (error.code === 'ECONNECTION' || error.code === 'ESOCKET') && !error.responseCode;
}

/** The transaction failed because the connection was lost before the server answered anything of
 *  it: nothing of the message can have been taken, and it may go once more on a fresh connection. */
export function lostBeforeAnyReply(outcome: TransactionOutcome): boolean {
  return outcome.error !== null && !outcome.heard && !outcome.dataSent && isConnectionLoss(outcome.error);
}

/** The connection's per-line hook (patches/nodemailer+10.6.0.patch): nodemailer reads it per line,
 *  so a pooled connection's can be pointed at the send now using it. */
export function responseLineHook(connection: SMTPConnection): { onResponseLine?: (lines: number) => void } {
  return (connection as unknown as { options: { onResponseLine?: (lines: number) => void } }).options;
}

/** MAIL FROM, RCPT TO and DATA for one message on an open session, until the last reply or the deadline. */
export async function runTransaction(connection: SMTPConnection, message: OutboundMessage, progress: () => void, deadline: SendDeadline): Promise<TransactionOutcome> {
  let dataSent = false;
  // Pulled by nodemailer only after 354 (a 'data' listener here would start the flow early
  // and make dataSent lie); each pull of the next chunk means the previous one was taken.
  const source = Readable.from(
    (function* () {
      // The DKIM-Signature of mail Postern originates goes first, without copying the message.
      if (message.headerPrefix && message.headerPrefix.length > 0) yield message.headerPrefix;
      for (const chunk of chunksOf(message.raw)) {
        yield chunk;
        progress();
      }
    })(),
  );
  source.once('end', () => {
    dataSent = true;
  });
  // Whether the server said anything during this transaction: the relay's own hook (progress)
  // still hears every line, this one only notes that one came.
  let heard = false;
  const hook = responseLineHook(connection);
  const relayHook = hook.onResponseLine;
  hook.onResponseLine = (lines) => {
    heard = true;
    relayHook?.(lines);
  };
  // nodemailer's close() drops the send waiting for a reply without calling it back: a connection
  // the engine closes (relay.interrupt() at shutdown) ends the send at its 'end' here, or the send
  // would wait out the whole-send deadline and the shutdown leave the delivery to its lease.
  let closed = () => {};
  const outcome = await Promise.race([
    new Promise<Pick<TransactionOutcome, 'error' | 'response'>>((resolve) => {
      connection.send(relayEnvelope(message), source, (error, info) => {
        resolve({ error: (error as NodemailerError | null) ?? null, response: info?.response ?? null });
      });
    }),
    new Promise<Pick<TransactionOutcome, 'error' | 'response'>>((resolve) => {
      // A turn later: on an error of its own nodemailer closes, then calls back with the error.
      closed = () => setImmediate(() => resolve({ error: Object.assign(new Error('Connection closed before the reply'), { code: 'ECONNECTION' }), response: null }));
      connection.once('end', closed);
    }),
    // The whole-send deadline closes the connection too, and says why here, first.
    deadline.passing.catch((error: Error) => ({ error: error as NodemailerError, response: null })),
  ]);
  connection.off('end', closed);
  hook.onResponseLine = relayHook;
  // nodemailer (without strictReplies, patches/) takes any reply to the end of data whose first
  // character is 2 for an acceptance: "2" alone, or "250-ok" followed by "550 no". Not a reply:
  // the message went out, what the server did with it is unknown (failureOf: outcome_unknown,
  // retried), and the session is not used again.
  if (!outcome.error && typeof outcome.response === 'string' && !isWellFormedReply(outcome.response)) {
    const error: NodemailerError = Object.assign(new Error(`Malformed reply: not an SMTP reply: ${outcome.response}`), { code: 'EPROTOCOL', response: outcome.response });
    return { error, response: null, dataSent, heard };
  }
  return { ...outcome, dataSent, heard };
}
