// A small raw-socket SMTP client for the tests: it sends exactly the bytes it is given (smuggling
// payloads, a byte at a time for the slow sender) and reads replies as the server wrote them.
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  /** The enhanced status code after the basic code, if any. */
  enhanced: string | null;
  /** The text of the last line, without codes. */
  text: string;
  lines: string[];
  /** The whole reply as received, e.g. "451 4.3.0 Temporary ...". */
  raw: string;
}

const REPLY_LINE = /^(\d{3})([ -])(?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/;

export function parseReply(lines: string[]): Reply {
  const last = lines[lines.length - 1] ?? '';
  const match = REPLY_LINE.exec(last);
  if (!match) throw new Error(`not an SMTP reply: ${JSON.stringify(lines)}`);
  return { code: Number(match[1]), enhanced: match[3] ?? null, text: match[4] ?? '', lines, raw: lines.join('\n') };
}

export class SmtpTestClient {
  /** The plain socket, or the TLS socket over it after startTls(). */
  socket: net.Socket;
  private buffer = '';
  private replies: Reply[] = [];
  private waiting: Array<{ resolve: (reply: Reply) => void; reject: (error: Error) => void }> = [];
  private ended = false;
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => this.onData(data));
    this.closed = new Promise((resolve) => {
      const end = () => {
        this.ended = true;
        for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`));
        resolve();
      };
      socket.on('close', end);
      socket.on('error', () => {});
    });
  }

  /** `localAddress` picks the client's source address (127.0.0.2 is another client of a loopback edge). */
  static async connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ client: SmtpTestClient; greeting: Reply }> {
    const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new SmtpTestClient(socket);
    const greeting = await client.readReply();
    return { client, greeting };
  }

  /**
   * STARTTLS, then the handshake over the same connection (any certificate: the tests use a
   * throwaway self-signed one). Returns the 220 reply; the caller sends EHLO again (RFC 3207 4.2).
   */
  async startTls(): Promise<{ reply: Reply; socket: tls.TLSSocket }> {
    const reply = await this.command('STARTTLS');
    if (reply.code !== 220) throw new Error(`STARTTLS refused: ${reply.raw}`);
    if (this.buffer !== '' || this.replies.length > 0) throw new Error('bytes after the 220 to STARTTLS (response injection)');
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    secure.on('error', () => {});
    secure.setEncoding('latin1');
    secure.on('data', (data: string) => this.onData(data));
    this.socket = secure;
    return { reply, socket: secure };
  }

  get isClosed(): boolean {
    return this.ended;
  }

  private onData(data: string): void {
    this.buffer += data;
    for (;;) {
      const lines: string[] = [];
      let offset = 0;
      let complete = false;
      for (;;) {
        const end = this.buffer.indexOf('\r\n', offset);
        if (end === -1) break;
        const line = this.buffer.slice(offset, end);
        lines.push(line);
        offset = end + 2;
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
          complete = true;
          break;
        }
      }
      if (!complete) return;
      this.buffer = this.buffer.slice(offset);
      const reply = parseReply(lines);
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(reply);
      else this.replies.push(reply);
    }
  }

  readReply(timeoutMs = 15_000): Promise<Reply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.ended) return Promise.reject(new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (reply: Reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(new Error(`no SMTP reply within ${timeoutMs} ms; buffered: ${JSON.stringify(this.buffer)}`));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  /** Writes raw bytes; resolves once they are handed to the kernel (backpressure respected). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, (error) => (error ? reject(error) : resolve()));
    });
  }

  async command(line: string): Promise<Reply> {
    await this.write(`${line}\r\n`);
    return this.readReply();
  }

  close(): void {
    this.socket.destroy();
  }

  async quit(): Promise<void> {
    if (this.ended) return;
    await this.command('QUIT').catch(() => {});
    this.socket.destroy();
  }
}

/** Dot-stuffs a message whose lines end in CRLF and appends the terminator. */
export function dataPayload(message: string | Buffer): Buffer {
  const text = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  const stuffed = text.toString('latin1').replace(/^\./gm, '..');
  return Buffer.concat([Buffer.from(stuffed, 'latin1'), Buffer.from('.\r\n')]);
}

export interface Transaction {
  mail: Reply;
  rcpts: Reply[];
  data: Reply | null;
  /** The reply after the final dot, when DATA was answered 354. */
  final: Reply | null;
}

/** MAIL, RCPT..., DATA, message; stops early when nothing was accepted. */
export async function sendMail(
  client: SmtpTestClient,
  options: { from: string; to: string[]; message: string | Buffer; mailParams?: string },
): Promise<Transaction> {
  const mail = await client.command(`MAIL FROM:<${options.from}>${options.mailParams ? ` ${options.mailParams}` : ''}`);
  const rcpts: Reply[] = [];
  if (mail.code !== 250) return { mail, rcpts, data: null, final: null };
  for (const to of options.to) rcpts.push(await client.command(`RCPT TO:<${to}>`));
  if (!rcpts.some((reply) => reply.code === 250)) return { mail, rcpts, data: null, final: null };
  const data = await client.command('DATA');
  if (data.code !== 354) return { mail, rcpts, data, final: null };
  await client.write(dataPayload(options.message));
  return { mail, rcpts, data, final: await client.readReply() };
}

export function simpleMessage(subject: string, body = 'Hello.\r\n'): string {
  return `From: Sender <sender@outside.test>\r\nTo: someone@postern.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W+/g, '-')}@outside.test>\r\n\r\n${body}`;
}
