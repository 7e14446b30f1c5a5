// Sending through MAIL_SMTP_ADDR with nodemailer's SMTP connection: pooled — a connection is kept
// open between messages and reused (RSET between transactions), at most one per attempt worker —
// STARTTLS whenever the relay offers it, optional AUTH, and MAIL_SMTP_TIMEOUT on connecting, the
// greeting and every wait for a reply.
// The connection is driven directly rather than through nodemailer's pooled transport because the
// engine must know whether the message had been handed over when something broke: the transport
// buffers the whole message before DATA, which hides that; here the message stream is only read
// once the relay answered 354. A timeout after that point may have delivered the mail and is
// recorded as outcome_unknown (classify-reply.ts).
import os from 'node:os';
import { Readable } from 'node:stream';
import type { Logger } from '@postern/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { declareSmtpUtf8, relayEnvelope } from './mail-from-extensions.ts';
import { type OutboundMessage, parseReply, type Relay, type SendFailure, type SendResult } from './relay.ts';

export interface SmtpRelayOptions {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  timeoutMs: number;
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
}

export function createSmtpRelay(options: SmtpRelayOptions): Relay {
  const log = options.logger.child({ component: 'smtp-relay' });
  const idle: PooledConnection[] = [];
  const active = new Set<PooledConnection>();
  let generation = 0;

  const open = () =>
    new Promise<PooledConnection>((resolve, reject) => {
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
        logger: false,
      });
      const pooled: PooledConnection = { connection, messages: 0, broken: false };
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
    async send(message: OutboundMessage): Promise<SendResult> {
      const myGeneration = generation;
      let pooled = idle.pop();
      while (pooled?.broken) {
        pooled.connection.close();
        pooled = idle.pop();
      }
      try {
        pooled ??= await open();
      } catch (error) {
        return { ok: false, failure: failureOf(error as NodemailerError, false, myGeneration !== generation) };
      }
      active.add(pooled);
      const connection = pooled.connection;
      let dataSent = false;
      const source = Readable.from([message.raw]);
      source.once('end', () => {
        dataSent = true;
      });
      const outcome = await new Promise<{ error: NodemailerError | null; response: string | null }>((resolve) => {
        const restore = declareSmtpUtf8(connection, message.smtpUtf8 === true);
        connection.send(relayEnvelope(message), source, (error, info) => {
          restore();
          resolve({ error: (error as NodemailerError | null) ?? null, response: info?.response ?? null });
        });
      });
      pooled.messages += 1;
      if (!outcome.error) {
        await release(pooled, true);
        const reply = parseReply(outcome.response ?? '250 OK');
        return { ok: true, reply: reply ?? { code: 250, enhanced: null, text: 'OK' } };
      }
      // A refused transaction leaves a usable session once RSET succeeds; anything else is closed.
      const reusable = Boolean(outcome.error.responseCode) && !pooled.broken && (await reset(pooled));
      await release(pooled, reusable);
      return { ok: false, failure: failureOf(outcome.error, dataSent, myGeneration !== generation) };
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
