// A relay for the engine to send to that records every command line exactly as received (smtp-server
// hands the raw lines to its logger's debug method as "C:"; its parsed envelope would show an xn--
// domain already decoded) and the messages it accepted. `offer` chooses what EHLO advertises.
import { SMTPServer } from 'smtp-server';

export interface CapturingSink {
  port: number;
  /** Every command line in the order received, with the connection it came on (the engine sends
   *  on several connections at once: a MAIL FROM belongs to the RCPT TO of its own connection). */
  commands: Array<{ connection: string; line: string }>;
  /** MAIL FROM lines only. */
  mailFromLines(): string[];
  messages: Array<{ to: string[]; raw: Buffer }>;
  close(): Promise<void>;
}

export async function startCapturingSink(offer: { smtpUtf8: boolean; eightBitMime: boolean }): Promise<CapturingSink> {
  const commands: Array<{ connection: string; line: string }> = [];
  const messages: Array<{ to: string[]; raw: Buffer }> = [];
  const ignore = () => {};
  const logger = {
    info: ignore,
    error: ignore,
    warn: ignore,
    trace: ignore,
    fatal: ignore,
    child: () => logger,
    debug: (meta: unknown, format: unknown, line: unknown) => {
      if (format === 'C:' && typeof line === 'string') commands.push({ connection: String((meta as { cid?: unknown } | null)?.cid), line });
    },
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    hideSMTPUTF8: !offer.smtpUtf8,
    hide8BITMIME: !offer.eightBitMime,
    logger: logger as never,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        messages.push({ to: session.envelope.rcptTo.map((entry) => entry.address), raw: Buffer.concat(chunks) });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as { port: number };
  return {
    port,
    commands,
    mailFromLines: () => commands.map((command) => command.line).filter((line) => /^MAIL FROM:/i.test(line)),
    messages,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
