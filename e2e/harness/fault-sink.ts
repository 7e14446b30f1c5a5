// One configurable relay that misbehaves on purpose, for the fault matrix (e2e/faults): it accepts,
// refuses with 4xx for the first K tries per recipient or during a time window, refuses with 5xx,
// hangs after DATA, drops the connection mid-transaction, delays every reply by D ms, or trickles a
// multi-line reply one line at a time. It counts what it received and what it answered 250 to per
// Message-ID, so a suite can count duplicates at the relay rather than trusting the engine's books.
// The behaviour can be changed while engines talk to it (a 4xx window that ends, a relay that
// recovers). Replies are written by smtp-server; delaying "every reply" and trickling reach into
// its connection object (`send`, `_socket`), which its typings do not expose.
import type net from 'node:net';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export type SinkBehaviour =
  | { kind: 'accept' }
  /** 451 at RCPT for the first `tries` RCPTs of each recipient, or until `untilMs` (epoch ms). */
  | { kind: 'refuse-4xx'; tries?: number; untilMs?: number }
  /** 550 at RCPT, for every recipient. */
  | { kind: 'refuse-5xx' }
  /** Reads the whole message and never answers the final dot. */
  | { kind: 'hang-after-data' }
  /** Reads the whole message and closes the connection without answering. */
  | { kind: 'drop-after-data' }
  /** Every reply, the greeting included, is written `delayMs` late (all below the client's timeout). */
  | { kind: 'delay-every-reply'; delayMs: number }
  /** The reply to the final dot is `lines` lines long, one line every `intervalMs`. */
  | { kind: 'trickle-reply'; lines: number; intervalMs: number };

export interface FaultSink {
  host: string;
  port: number;
  /** Messages whose DATA was read completely, by key (see keyOf), whatever was answered. */
  received: Map<string, number>;
  /** Messages answered 250 after DATA, by key: what a real relay would have taken responsibility for. */
  accepted: Map<string, number>;
  /** RCPT commands seen, by recipient. */
  rcpts: Map<string, number>;
  /** Connections cut by the sink itself (drop-after-data). */
  dropped(): number;
  setBehaviour(behaviour: SinkBehaviour): void;
  /** Keys answered 250 more than once, with their counts. */
  duplicates(): Map<string, number>;
  close(): Promise<void>;
}

/** The X-Fault-Key header if the message has one, else its Message-ID (angle brackets kept). */
export function keyOf(raw: Buffer): string {
  const headEnd = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, headEnd === -1 ? raw.length : headEnd).toString('latin1').replace(/\r\n[ \t]+/g, ' ');
  const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head)?.[1]?.trim();
  return field('X-Fault-Key') ?? field('Message-ID') ?? '(no key)';
}

interface ConnectionInternals {
  id: string;
  _socket: net.Socket;
  send(code: number, data?: unknown, context?: unknown): void;
}

function smtpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function startFaultSink(initial: SinkBehaviour = { kind: 'accept' }): Promise<FaultSink> {
  let behaviour = initial;
  let droppedCount = 0;
  const received = new Map<string, number>();
  const accepted = new Map<string, number>();
  const rcpts = new Map<string, number>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  const server: SMTPServer = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    logger: false,
    size: 50 * 1024 * 1024,
    onConnect(session, callback) {
      // Installed before the greeting is written, so every reply of the session goes through it.
      if (behaviour.kind === 'delay-every-reply') {
        const connection = connectionOf(session);
        const delayMs = behaviour.delayMs;
        const send = connection.send.bind(connection);
        connection.send = (code, data, context) => {
          setTimeout(() => {
            if (!connection._socket.destroyed) send(code, data, context);
          }, delayMs);
        };
      }
      callback();
    },
    onRcptTo(address, _session, callback) {
      const recipient = address.address.toLowerCase();
      bump(rcpts, recipient);
      if (behaviour.kind === 'refuse-5xx') return callback(smtpError(550, '5.1.1 fault sink: mailbox unavailable'));
      if (behaviour.kind === 'refuse-4xx') {
        const byTries = behaviour.tries !== undefined && (rcpts.get(recipient) ?? 0) <= behaviour.tries;
        const byTime = behaviour.untilMs !== undefined && Date.now() < behaviour.untilMs;
        if (byTries || byTime) return callback(smtpError(451, '4.3.0 fault sink: try again later'));
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const key = keyOf(Buffer.concat(chunks));
        bump(received, key);
        const current = behaviour;
        if (current.kind === 'hang-after-data') return;
        if (current.kind === 'drop-after-data') {
          droppedCount += 1;
          connectionOf(session)._socket.destroy();
          return;
        }
        const finish = () => {
          bump(accepted, key);
          callback(null, 'fault sink: queued');
        };
        if (current.kind !== 'trickle-reply') return finish();
        const socket = connectionOf(session)._socket;
        let written = 0;
        const timer = setInterval(() => {
          if (socket.destroyed) return clearInterval(timer);
          if (written < current.lines - 1) {
            socket.write(`250-fault sink: still working (${written + 1})\r\n`);
            written += 1;
            return;
          }
          clearInterval(timer);
          finish();
        }, current.intervalMs);
      });
    },
  });
  const connectionOf = (session: SMTPServerSession): ConnectionInternals => {
    const connections = (server as unknown as { connections: Set<ConnectionInternals> }).connections;
    for (const connection of connections) if (connection.id === session.id) return connection;
    throw new Error(`fault sink: no connection for session ${session.id}`);
  };
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port: address.port,
    received,
    accepted,
    rcpts,
    dropped: () => droppedCount,
    setBehaviour(next) {
      behaviour = next;
    },
    duplicates() {
      return new Map([...accepted].filter(([, count]) => count > 1));
    },
    close() {
      const connections = (server as unknown as { connections: Set<ConnectionInternals> }).connections;
      for (const connection of connections) connection._socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
