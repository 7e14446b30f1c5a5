// The SMTP load client of the benchmark: N sessions, each sending one message after another
// (MAIL, RCPT, DATA, 2 KiB, final dot) over a kept-open connection, timing every RCPT. The same
// client drives the edge and smtp-sink, so the ratio compares servers, not clients.
import { randomUUID } from 'node:crypto';
import net from 'node:net';

export interface LoadResult {
  accepted: number;
  refused: number;
  seconds: number;
  rcptMs: number[];
}

class Session {
  private readonly socket: net.Socket;
  private buffer = '';
  private waiter: ((line: string) => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      this.buffer += data;
      this.deliver();
    });
    socket.on('error', () => {});
  }

  static async open(port: number): Promise<Session> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const session = new Session(socket);
    await session.reply();
    await session.command('EHLO bench.client.test');
    return session;
  }

  private deliver(): void {
    if (!this.waiter) return;
    // A complete reply ends with a line "ddd text" (no dash after the code).
    let offset = 0;
    for (;;) {
      const end = this.buffer.indexOf('\r\n', offset);
      if (end === -1) return;
      const line = this.buffer.slice(offset, end);
      offset = end + 2;
      if (line.length < 4 || line[3] === ' ') {
        this.buffer = this.buffer.slice(offset);
        const waiter = this.waiter;
        this.waiter = null;
        waiter(line);
        return;
      }
    }
  }

  reply(): Promise<string> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.deliver();
    });
  }

  command(line: string | Buffer): Promise<string> {
    const answer = this.reply();
    this.socket.write(line instanceof Buffer ? line : `${line}\r\n`);
    return answer;
  }

  close(): void {
    this.socket.end('QUIT\r\n');
    this.socket.destroy();
  }
}

/** 2 KiB of proper CRLF lines, with its terminator. Every message has its own Message-ID: a
 *  byte-identical message to the same recipient is a retry to Postern, answered without storing. */
export function benchMessage(): Buffer {
  const head = `From: bench@client.test\r\nTo: someone@bench.test\r\nSubject: benchmark\r\nMessage-ID: <${randomUUID()}@client.test>\r\n\r\n`;
  let body = '';
  while (head.length + body.length < 2048 - 78) body += `${'b'.repeat(74)}\r\n`;
  return Buffer.from(`${head}${body}.\r\n`);
}

export async function runLoad(options: {
  port: number;
  sessions: number;
  seconds: number;
  recipient: () => string;
}): Promise<LoadResult> {
  const rcptMs: number[] = [];
  let accepted = 0;
  let refused = 0;
  const sessions = await Promise.all(Array.from({ length: options.sessions }, () => Session.open(options.port)));
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  await Promise.all(
    sessions.map(async (session) => {
      while (performance.now() < deadline) {
        await session.command('MAIL FROM:<bench@client.test>');
        const before = performance.now();
        const rcpt = await session.command(`RCPT TO:<${options.recipient()}>`);
        rcptMs.push(performance.now() - before);
        if (!rcpt.startsWith('250')) {
          refused++;
          await session.command('RSET');
          continue;
        }
        await session.command('DATA');
        const final = await session.command(benchMessage());
        if (final.startsWith('250')) accepted++;
        else refused++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const session of sessions) session.close();
  return { accepted, refused, seconds, rcptMs };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
