// A sender that behaves as a real MTA towards the edge: each message is retried on every temporary
// outcome (4xx, connection refused or cut, no reply) until it is answered 250 or the deadline
// passes; a 5xx is final. The wait for the reply to the final dot is RFC 5321 4.5.3.2.6's ten
// minutes, not a test's impatience, so a 451 counts only when the edge really said it — cut short
// only by the sender's own deadline, past which a final dot still unanswered counts as unanswered
// (a test whose edge never answers then fails with its account instead of running into its timeout).
import { setTimeout as delay } from 'node:timers/promises';
import { dataPayload, SmtpTestClient } from '../../mta/helpers/smtp-client.ts';

export interface OutboundMessage {
  /** Message-ID without brackets; also the X-Fault-Key the relay counts by. */
  token: string;
  from: string;
  to: string;
  raw: Buffer;
}

export interface SendRecord {
  token: string;
  /** The reply that ended it: 250 accepted, 5xx refused, or null when the deadline passed. */
  final: string | null;
  /** Transactions tried, the last included. */
  tries: number;
  /** Transactions whose final dot was written and that got no reply (connection cut): the sender cannot know. */
  unanswered: number;
  /** Transactions answered 4xx after the final dot (the edge said nothing was stored). */
  deferredAfterData: number;
}

export interface SenderOptions {
  /** The edge's SMTP port now (a restarted edge may listen elsewhere). */
  port: () => number;
  concurrency: number;
  deadlineMs: number;
  /** Awaited between the two halves of every message body: lets a test hold sessions in DATA. */
  midData?: (message: OutboundMessage) => Promise<void>;
  retryDelayMs?: number;
  /** Pause between one message's end and the next on each connection slot: intake as a flow. */
  paceMs?: number;
  /** Told about every message answered 250. */
  onAccepted?: () => void;
}

export function faultMessage(cell: string, index: number, to: string): OutboundMessage {
  const token = `${cell}-m${index}@fault.test`;
  const from = `sender-${cell}@outside.test`;
  const body = `Message ${index} of fault cell ${cell}.\r\n${'Some body text for the relay to carry.\r\n'.repeat(20)}`;
  const raw = Buffer.from(
    `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${cell} ${index}\r\nMessage-ID: <${token}>\r\nX-Fault-Key: ${token}\r\n\r\n${body}`,
  );
  return { token, from, to, raw };
}

const FINAL_REPLY_MS = 600_000;

async function oneTransaction(message: OutboundMessage, options: SenderOptions, record: SendRecord, deadline: number): Promise<string | null> {
  let client: SmtpTestClient | null = null;
  let dotWritten = false;
  try {
    const opened = await SmtpTestClient.connect(options.port());
    client = opened.client;
    if (opened.greeting.code !== 220) return null;
    const steps = [`EHLO client.${record.token.split('@')[0]}.test`, `MAIL FROM:<${message.from}>`, `RCPT TO:<${message.to}>`, 'DATA'];
    for (const step of steps) {
      const reply = await client.command(step);
      const wanted = step === 'DATA' ? 354 : 250;
      if (reply.code === wanted) continue;
      return reply.code >= 500 ? reply.raw : null;
    }
    const payload = dataPayload(message.raw);
    const half = Math.floor(payload.length / 2);
    await client.write(payload.subarray(0, half));
    if (options.midData) await options.midData(message);
    await client.write(payload.subarray(half));
    dotWritten = true;
    const final = await client.readReply(Math.max(1, Math.min(FINAL_REPLY_MS, deadline - Date.now())));
    if (final.code === 250 || final.code >= 500) return final.raw;
    record.deferredAfterData += 1;
    return null;
  } catch {
    if (dotWritten) record.unanswered += 1;
    return null;
  } finally {
    if (client) await client.quit().catch(() => {});
  }
}

/** Sends every message, `concurrency` at a time; resolves with one record per message, in order. */
export async function sendAll(messages: OutboundMessage[], options: SenderOptions): Promise<SendRecord[]> {
  const records = messages.map((message) => ({ token: message.token, final: null, tries: 0, unanswered: 0, deferredAfterData: 0 }) as SendRecord);
  const deadline = Date.now() + options.deadlineMs;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const index = next++;
      const message = messages[index];
      const record = records[index];
      if (!message || !record) return;
      while (Date.now() < deadline) {
        record.tries += 1;
        const final = await oneTransaction(message, options, record, deadline);
        if (final !== null) {
          record.final = final;
          if (final.startsWith('250')) options.onAccepted?.();
          break;
        }
        await delay(options.retryDelayMs ?? 500);
      }
      if (options.paceMs) await delay(options.paceMs);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return records;
}
