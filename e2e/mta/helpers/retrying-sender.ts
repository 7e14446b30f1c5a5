// A sender that behaves like a real MTA towards the edge: a 4xx at any step, a connection that
// breaks, or no reply to the final dot within its own patience, and it tries again later from a
// new session (RFC 5321 4.5.4.1); a 5xx is a permanent failure. Patience much shorter than the
// RFC's 10 minutes is what makes a PostgreSQL hang outlast the sender's wait.
import { setTimeout as delay } from 'node:timers/promises';
import { dataPayload, type Reply, SmtpTestClient } from './smtp-client.ts';

export interface RetryingSendOptions {
  port: number;
  from: string;
  to: string;
  message: string;
  /** How long to wait for each reply before giving up on the session. */
  patienceMs: number;
  retryAfterMs: number;
  /** Give up altogether after this. */
  deadlineMs: number;
  /** Awaited before the FIRST attempt's final dot is written (the test starts its fault then). */
  beforeFirstFinalDot?: () => Promise<void>;
}

export interface RetryingSendResult {
  /** The 250 reply that ended it. */
  accepted: Reply;
  attempts: number;
  /** Every reply of 4xx or 421 seen on the way, and "timeout"/"closed" for sessions given up. */
  transient: string[];
}

class Transient extends Error {}

async function once(options: RetryingSendOptions, attempt: number): Promise<Reply> {
  let client: SmtpTestClient;
  try {
    ({ client } = await SmtpTestClient.connect(options.port));
  } catch (error) {
    throw new Transient(`connect: ${(error as Error).message}`);
  }
  const step = async (line: string | Buffer, expected: number): Promise<Reply> => {
    if (typeof line === 'string') await client.write(`${line}\r\n`);
    else await client.write(line);
    let reply: Reply;
    try {
      reply = await client.readReply(options.patienceMs);
    } catch (error) {
      throw new Transient((error as Error).message.startsWith('no SMTP reply') ? 'timeout' : 'closed');
    }
    if (reply.code === expected) return reply;
    if (reply.code >= 500) throw new Error(`permanent failure: ${reply.raw}`);
    throw new Transient(reply.raw);
  };
  try {
    await step('EHLO sender.outside.test', 250);
    await step(`MAIL FROM:<${options.from}>`, 250);
    await step(`RCPT TO:<${options.to}>`, 250);
    await step('DATA', 354);
    const payload = dataPayload(options.message);
    const body = payload.subarray(0, payload.length - 3);
    await client.write(body);
    if (attempt === 1) await options.beforeFirstFinalDot?.();
    return await step(payload.subarray(payload.length - 3), 250);
  } finally {
    client.close();
  }
}

/** Sends until a 250 after the final dot; throws on a 5xx or at the deadline. */
export async function sendRetrying(options: RetryingSendOptions): Promise<RetryingSendResult> {
  const transient: string[] = [];
  const giveUpAt = Date.now() + options.deadlineMs;
  for (let attempts = 1; ; attempts++) {
    try {
      return { accepted: await once(options, attempts), attempts, transient };
    } catch (error) {
      if (!(error instanceof Transient)) throw error;
      transient.push(error.message);
      if (Date.now() > giveUpAt) throw new Error(`not accepted within ${options.deadlineMs} ms: ${transient.join(' | ')}`);
      await delay(options.retryAfterMs);
    }
  }
}
