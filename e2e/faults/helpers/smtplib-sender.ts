// The fault matrix's SMTP channel through a client we did not write: Python's smtplib as a sending
// MTA (e2e/faults/peers/smtplib_sender.py: every temporary outcome tried again until 250 or the
// deadline, a 5xx final). Its records are the account's, like smtp-sender.ts's, with every refusal
// it met in `replies`, so a cell can say which replies the edge gave while the fault lasted.
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { OutboundMessage, SendRecord } from './smtp-sender.ts';

const SCRIPT = path.join(import.meta.dirname, '..', 'peers', 'smtplib_sender.py');

export interface SmtplibRecord extends SendRecord {
  /** Every reply other than 2xx that ended a try, and every broken connection, in order. */
  replies: string[];
}

export interface SmtplibOptions {
  port: number;
  concurrency: number;
  deadlineMs: number;
  retryDelayMs?: number;
  /** Pause between one message's end and the next on each connection slot: intake as a flow. */
  paceMs?: number;
  /** Told about every message answered 250. */
  onAccepted?: () => void;
}

/** Sends every message with smtplib; resolves with one record per message, in order. */
export function sendWithSmtplib(messages: OutboundMessage[], options: SmtplibOptions): Promise<SmtplibRecord[]> {
  const input = {
    host: '127.0.0.1',
    port: options.port,
    concurrency: options.concurrency,
    deadlineSeconds: options.deadlineMs / 1000,
    retryDelaySeconds: (options.retryDelayMs ?? 500) / 1000,
    paceSeconds: (options.paceMs ?? 0) / 1000,
    messages: messages.map((message) => ({ token: message.token, from: message.from, to: message.to, raw: message.raw.toString('utf8') })),
  };
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let pending = '';
    let records: SmtplibRecord[] | null = null;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = JSON.parse(pending.slice(0, newline)) as { accepted?: string; records?: SmtplibRecord[] };
        pending = pending.slice(newline + 1);
        if (line.accepted) options.onAccepted?.();
        if (line.records) records = line.records;
        newline = pending.indexOf('\n');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (error) => reject(new Error(`python3 (a real SMTP peer this test needs) did not start: ${error.message}`)));
    // Read after 'close', not 'exit': the last line may still be in the pipe at 'exit'.
    child.on('close', (code) => {
      if (code === 0 && records) resolve(records);
      else reject(new Error(`smtplib_sender.py exited ${code}: ${stderr.slice(-2_000)}`));
    });
    child.stdin.end(JSON.stringify(input));
  });
}
