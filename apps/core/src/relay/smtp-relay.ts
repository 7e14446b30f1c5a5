// Sending through MAIL_SMTP_ADDR with nodemailer's SMTP connection: pooled — a connection is kept
// open between messages and reused (RSET between transactions), at most one per attempt worker —
// STARTTLS whenever the relay offers it, optional AUTH, and MAIL_SMTP_TIMEOUT on connecting, the
// greeting and every wait for a reply.
// The connection is driven directly rather than through nodemailer's pooled transport because the
// engine must know whether the message had been handed over when something broke: the transport
// buffers the whole message before DATA, which hides that. The transaction and the whole-send
// deadline are smtp-transaction.ts, shared with the direct-to-MX relay.
// Slow is not stalled: every reply line from the relay (continuation lines included) is reported
// as progress (the worker beats its heartbeat), so a relay that answers each command just under
// MAIL_SMTP_TIMEOUT, or trickles a multi-line reply, is never mistaken for a hung one.
import os from 'node:os';
import { childLogger, type Logger } from '@postern/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { OutboundMessage, Relay, SendResult } from './relay.ts';
import { failureOf, lostBeforeAnyReply, type NodemailerError, resetSession, runTransaction, sentResult, startSendDeadline } from './smtp-transaction.ts';

export interface SmtpRelayOptions {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  timeoutMs: number;
  /** Whole send, connect to the last reply; past it the connection is closed. */
  sendDeadlineMs: number;
  maxConnections: number;
  /** The EHLO name: MAIL_MTA_HOSTNAME (engine.ts), else the machine's hostname. A relay that checks
   *  it (Postfix's reject_non_fqdn_helo_hostname) refuses a container's bare id at every RCPT TO. */
  localName?: string;
  /** A route's TLS requirement (routed-relay.ts): opportunistic uses STARTTLS when offered, an
   *  unverifiable certificate included; required sends only over TLS with a verified certificate.
   *  Unset (MAIL_SMTP_ADDR's relay): STARTTLS when offered, the certificate verified. */
  tls?: 'opportunistic' | 'required';
  logger: Logger;
}

/** A connection is replaced after this many messages, as a long-lived session is (Postfix: smtp_connection_reuse_count_limit). */
const MAX_MESSAGES_PER_CONNECTION = 1_000;

interface PooledConnection {
  connection: SMTPConnection;
  messages: number;
  broken: boolean;
  /** The send under way on this connection hears of each reply line here. */
  onReply: () => void;
}

function inSetup(result: SendResult): SendResult {
  return result.ok ? result : { ok: false, failure: { ...result.failure, inSetup: true } };
}

export function createSmtpRelay(options: SmtpRelayOptions): Relay {
  const log = childLogger(options.logger, { component: 'smtp-relay' });
  const idle: PooledConnection[] = [];
  const active = new Set<PooledConnection>();
  /** Connections of sends still setting up their session (greeting, EHLO, STARTTLS, AUTH): an
   *  interrupt closes them too, or a send to a relay that never greets (relay-health.ts's probe)
   *  outlived the shutdown by its greeting timeout and was left to its lease. */
  const settingUp = new Set<PooledConnection>();
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
        name: options.localName ?? os.hostname(),
        connectionTimeout: options.timeoutMs,
        greetingTimeout: options.timeoutMs,
        socketTimeout: options.timeoutMs,
        dnsTimeout: options.timeoutMs,
        ...(options.tls === 'required' ? { requireTLS: true, tls: { rejectUnauthorized: true } } : {}),
        ...(options.tls === 'opportunistic' ? { tls: { rejectUnauthorized: false } } : {}),
        // Every reply line, continuation lines included (patches/nodemailer+10.6.0.patch): a reply
        // trickled line by line is a slow peer, not a hung one; the whole-send deadline bounds it.
        onResponseLine: () => pooledRef.onReply(),
        // A reply whose lines disagree, or more replies than commands, is a protocol error
        // (patches/nodemailer+10.6.0.patch), never read by its first character (failureOf).
        strictReplies: true,
        logger: false,
      });
      const pooled: PooledConnection = Object.assign(pooledRef, { connection, messages: 0, broken: false });
      opened(pooled);
      // Until the session is set up (greeting, EHLO, STARTTLS and AUTH) its errors fail the open:
      // nodemailer drops the callback of a command still waiting for a reply when the connection
      // fails, so a relay that closes or falls silent after AUTH never calls login back.
      const onError = (error: Error) => {
        pooled.broken = true;
        reject(error);
      };
      connection.on('error', onError);
      connection.on('end', () => {
        pooled.broken = true;
        reject(Object.assign(new Error('Connection closed during session setup'), { code: 'ECONNECTION' }));
      });
      const ready = () => {
        connection.off('error', onError);
        // Later errors reach the send callback; the listener only keeps them from being uncaught.
        connection.on('error', () => {
          pooled.broken = true;
        });
        resolve(pooled);
      };
      connection.connect(() => {
        if (!options.username) return ready();
        connection.login({ user: options.username, pass: options.password ?? '' }, (error) => {
          if (error) {
            connection.close();
            reject(error);
          } else ready();
        });
      });
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
      const deadline = startSendDeadline(options.sendDeadlineMs, 'the relay', () => {
        if (current) {
          current.broken = true;
          current.connection.close();
        }
      });
      try {
        // At most twice: a reused session the relay closed while it was idle (its close not seen
        // yet) fails the next transaction before a single reply, having sent nothing; that message
        // goes once more on a fresh session rather than waiting out a retry (Postfix replaces a
        // cached connection found dead the same way).
        for (let take = 1; ; take++) {
          let pooled = take === 1 ? idle.pop() : undefined;
          while (pooled?.broken) {
            pooled.connection.close();
            pooled = idle.pop();
          }
          const reused = pooled !== undefined;
          if (pooled) pooled.onReply = progress;
          let opening: PooledConnection | null = null;
          try {
            pooled ??= await Promise.race([
              open((opened) => {
                opening = opened;
                current = opened;
                settingUp.add(opened);
              }, progress),
              deadline.passing,
            ]);
          } catch (error) {
            // A greeting trickled past the whole-send deadline is a session that could not be set up too.
            if (deadline.passed()) return inSetup(deadline.failure(false));
            return { ok: false, failure: { ...failureOf(error as NodemailerError, false, myGeneration !== generation), inSetup: true } };
          } finally {
            if (opening) settingUp.delete(opening);
          }
          current = pooled;
          active.add(pooled);
          const outcome = await runTransaction(pooled.connection, message, progress, deadline);
          pooled.messages += 1;
          pooled.onReply = () => {};
          if (!outcome.error) {
            await release(pooled, !deadline.passed());
            return sentResult(outcome.response);
          }
          if (deadline.passed()) {
            await release(pooled, false);
            return deadline.failure(outcome.dataSent);
          }
          if (reused && lostBeforeAnyReply(outcome) && myGeneration === generation) {
            pooled.broken = true;
            await release(pooled, false);
            log.debug({ error: outcome.error.message }, 'a reused relay session was closed while idle: the message goes on a fresh one');
            continue;
          }
          // A refused transaction leaves a usable session once RSET succeeds in time; anything else
          // (a relay that refuses and then closes or falls silent) is closed.
          // (A reply that is not one, isWellFormedReply, leaves no session to trust either.)
          const refused = Boolean(failureOf(outcome.error, outcome.dataSent, false).reply?.code);
          const reusable = refused && !pooled.broken && (await resetSession(pooled.connection, options.timeoutMs));
          await release(pooled, reusable);
          return { ok: false, failure: failureOf(outcome.error, outcome.dataSent, myGeneration !== generation) };
        }
      } finally {
        deadline.clear();
      }
    },
    interrupt() {
      generation += 1;
      for (const pooled of [...settingUp, ...active, ...idle.splice(0)]) {
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
