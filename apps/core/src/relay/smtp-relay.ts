// Sending through MAIL_SMTP_ADDR with nodemailer's SMTP connection: pooled — a connection is kept
// open between messages and reused (RSET between transactions), at most one per attempt worker —
// STARTTLS whenever the relay offers it, optional AUTH, and MAIL_SMTP_TIMEOUT on connecting, the
// greeting and every wait for a reply.
// The connection is driven directly rather than through nodemailer's pooled transport because the
// engine must know whether the message had been handed over when something broke: the transport
// buffers the whole message before DATA, which hides that; here the message stream is only read
// once the relay answered 354. A timeout after that point may have delivered the mail and is
// recorded as outcome_unknown (classify-reply.ts).
// Slow is not stalled: every reply line from the relay (continuation lines included) and
// every chunk of the message taken by the socket is reported as progress (the worker beats its
// heartbeat), so a relay that answers each command just under MAIL_SMTP_TIMEOUT, or trickles a
// multi-line reply, is never mistaken for a hung one. And a relay that keeps the socket busy
// without ever finishing — a multi-line reply trickled one line every 2 s resets nodemailer's
// socketTimeout forever — is cut by the whole-send deadline
// (MAIL_SMTP_SEND_DEADLINE): the send ends as a timeout, outcome_unknown if the data was out.
import os from 'node:os';
import { Readable } from 'node:stream';
import type { Logger } from '@postern/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { relayEnvelope } from './mail-from-extensions.ts';
import { type OutboundMessage, parseReply, type Relay, type SendFailure, type SendResult } from './relay.ts';

export interface SmtpRelayOptions {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  timeoutMs: number;
  /** Whole send, connect to the last reply; past it the connection is closed. */
  sendDeadlineMs: number;
  maxConnections: number;
  logger: Logger;
}

interface NodemailerError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
}

/** A connection is replaced after this many messages, as a long-lived session is (Postfix: smtp_connection_reuse_count_limit). */
const MAX_MESSAGES_PER_CONNECTION = 1_000;

function failureOf(error: NodemailerError, dataSent: boolean, interrupted: boolean): SendFailure {
  const reply = error.responseCode ? parseReply(error.response ?? `${error.responseCode} ${error.message}`) : null;
  let kind: SendFailure['kind'] = 'other';
  if (reply?.code) kind = 'reply';
  else if (error.code === 'ETIMEDOUT') kind = 'timeout';
  else if (['ECONNECTION', 'ESOCKET', 'EDNS', 'ECONNREFUSED', 'ECONNRESET', 'ETLS', 'EPROTOCOL'].includes(error.code ?? '')) kind = 'connection';
  return { kind, reply, dataSent, interrupted, message: `${error.code ?? 'ERROR'}: ${error.message}`.slice(0, 1_000) };
}

interface PooledConnection {
  connection: SMTPConnection;
  messages: number;
  broken: boolean;
  /** The send under way on this connection hears of each reply line here. */
  onReply: () => void;
}

/** Message bytes are handed to the socket in chunks of this size; each one taken is progress. */
const DATA_CHUNK_BYTES = 64 * 1024;

function chunksOf(raw: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < raw.length; offset += DATA_CHUNK_BYTES) chunks.push(raw.subarray(offset, offset + DATA_CHUNK_BYTES));
  return chunks.length > 0 ? chunks : [raw];
}

class SendDeadlinePassed extends Error {}

export function createSmtpRelay(options: SmtpRelayOptions): Relay {
  const log = options.logger.child({ component: 'smtp-relay' });
  const idle: PooledConnection[] = [];
  const active = new Set<PooledConnection>();
  let generation = 0;

  const open = (opened: (pooled: PooledConnection) => void, onReply: () => void) =>
    new Promise<PooledConnection>((resolve, reject) => {
      const pooledRef: { onReply: () => void } = { onReply };
      const connection = new SMTPConnection({
        host: options.host,
        port: options.port,
        // 465 is implicit TLS (RFC 8314); everything else starts plain and upgrades with STARTTLS
        // when the relay advertises it.
        secure: options.port === 465,
        name: os.hostname(),
        connectionTimeout: options.timeoutMs,
        greetingTimeout: options.timeoutMs,
        socketTimeout: options.timeoutMs,
        dnsTimeout: options.timeoutMs,
        // Every reply line, continuation lines included (patches/nodemailer+10.6.0.patch): a reply
        // trickled line by line is a slow peer, not a hung one; the whole-send deadline bounds it.
        onResponseLine: () => pooledRef.onReply(),
        logger: false,
      });
      const pooled: PooledConnection = Object.assign(pooledRef, { connection, messages: 0, broken: false });
      opened(pooled);
      const onError = (error: Error) => {
        pooled.broken = true;
        reject(error);
      };
      connection.once('error', onError);
      connection.on('end', () => {
        pooled.broken = true;
      });
      connection.connect(() => {
        connection.off('error', onError);
        // Later errors reach the send callback; the listener only keeps them from being uncaught.
        connection.on('error', () => {
          pooled.broken = true;
        });
        if (!options.username) return resolve(pooled);
        connection.login({ user: options.username, pass: options.password ?? '' }, (error) => {
          if (error) {
            connection.close();
            reject(error);
          } else resolve(pooled);
        });
      });
    });

  const reset = (pooled: PooledConnection) =>
    new Promise<boolean>((resolve) => {
      pooled.connection.reset((error) => resolve(!error));
    });

  const release = async (pooled: PooledConnection, reusable: boolean) => {
    active.delete(pooled);
    if (reusable && !pooled.broken && pooled.messages < MAX_MESSAGES_PER_CONNECTION && idle.length < options.maxConnections) {
      idle.push(pooled);
    } else if (pooled.broken) pooled.connection.close();
    else pooled.connection.quit();
  };

  return {
    name: `smtp://${options.host}:${options.port}`,
    async send(message: OutboundMessage, progress: () => void = () => {}): Promise<SendResult> {
      const myGeneration = generation;
      let current: PooledConnection | null = null;
      let deadlinePassed = false;
      let onDeadline: (error: Error) => void = () => {};
      const deadline = new Promise<never>((_, reject) => {
        onDeadline = reject;
      });
      deadline.catch(() => {});
      const timer = setTimeout(() => {
        deadlinePassed = true;
        if (current) {
          current.broken = true;
          current.connection.close();
        }
        onDeadline(new SendDeadlinePassed(`whole-send deadline of ${options.sendDeadlineMs} ms passed`));
      }, options.sendDeadlineMs);
      const deadlineFailure = (dataSent: boolean): SendResult => ({
        ok: false,
        failure: { kind: 'timeout', reply: null, dataSent, interrupted: false, message: `ETIMEDOUT: whole-send deadline of ${options.sendDeadlineMs} ms passed (the relay kept the connection busy without finishing)` },
      });
      try {
        let pooled = idle.pop();
        while (pooled?.broken) {
          pooled.connection.close();
          pooled = idle.pop();
        }
        if (pooled) pooled.onReply = progress;
        try {
          pooled ??= await Promise.race([
            open((opening) => {
              current = opening;
            }, progress),
            deadline,
          ]);
        } catch (error) {
          if (deadlinePassed) return deadlineFailure(false);
          return { ok: false, failure: failureOf(error as NodemailerError, false, myGeneration !== generation) };
        }
        current = pooled;
        active.add(pooled);
        const connection = pooled.connection;
        let dataSent = false;
        // Pulled by nodemailer only after 354 (a 'data' listener here would start the flow early
        // and make dataSent lie); each pull of the next chunk means the previous one was taken.
        const source = Readable.from(
          (function* () {
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
        type Outcome = { error: NodemailerError | null; response: string | null };
        const outcome = await Promise.race([
          new Promise<Outcome>((resolve) => {
            connection.send(relayEnvelope(message), source, (error, info) => {
              resolve({ error: (error as NodemailerError | null) ?? null, response: info?.response ?? null });
            });
          }),
          // A closed connection normally fails the send at once; this is for one that does not.
          deadline.catch((error: Error): Outcome => ({ error, response: null })),
        ]);
        pooled.messages += 1;
        pooled.onReply = () => {};
        if (!outcome.error) {
          await release(pooled, !deadlinePassed);
          const reply = parseReply(outcome.response ?? '250 OK');
          return { ok: true, reply: reply ?? { code: 250, enhanced: null, text: 'OK' } };
        }
        if (deadlinePassed) {
          await release(pooled, false);
          return deadlineFailure(dataSent);
        }
        // A refused transaction leaves a usable session once RSET succeeds; anything else is closed.
        const reusable = Boolean(outcome.error.responseCode) && !pooled.broken && (await reset(pooled));
        await release(pooled, reusable);
        return { ok: false, failure: failureOf(outcome.error, dataSent, myGeneration !== generation) };
      } finally {
        clearTimeout(timer);
      }
    },
    interrupt() {
      generation += 1;
      for (const pooled of [...active, ...idle.splice(0)]) {
        pooled.broken = true;
        pooled.connection.close();
      }
      log.warn('relay connections closed: sends under way were interrupted');
    },
    async close() {
      for (const pooled of idle.splice(0)) pooled.connection.quit();
      for (const pooled of active) pooled.connection.close();
    },
  };
}
