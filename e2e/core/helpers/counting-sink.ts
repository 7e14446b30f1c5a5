// A relay for large messages: counts what it accepts, by recipient, and keeps none of the bytes (a
// test relaying a gigabyte must not hold it; smtp-servers.ts keeps every message). Optionally slow
// to answer the end of the data, so that the engine's sends, and the messages they hold, last.
import { createHash } from 'node:crypto';
import { SMTPServer } from 'smtp-server';

export interface CountingSink {
  port: number;
  /** Messages accepted (250 to the data), by recipient: more than 1 is a duplicate. */
  accepted: Map<string, number>;
  /** SHA-256 (hex) of the last message accepted for each recipient, as received (dot-stuffing undone). */
  digests: Map<string, string>;
  close(): Promise<void>;
}

export async function startCountingSink({ answerDataAfterMs = 0 }: { answerDataAfterMs?: number } = {}): Promise<CountingSink> {
  const accepted = new Map<string, number>();
  const digests = new Map<string, string>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    logger: false,
    onData(stream, session, callback) {
      const digest = createHash('sha256');
      stream.on('data', (chunk: Buffer) => digest.update(chunk));
      stream.on('end', () => {
        const hex = digest.digest('hex');
        setTimeout(() => {
          for (const { address } of session.envelope.rcptTo) {
            accepted.set(address, (accepted.get(address) ?? 0) + 1);
            digests.set(address, hex);
          }
          callback();
        }, answerDataAfterMs);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.server.address() as { port: number }).port,
    accepted,
    digests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
