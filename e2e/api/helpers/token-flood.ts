// A flood of bearer-token lookups, as anyone can make one without a token: connections that each
// send one /graphql request with a made-up `pst_` token of the right shape and a chunked body never
// finished (every such request costs a PostgreSQL lookup before its body is read,
// apps/api/src/auth/token-lookups.ts); each connection answered is closed and replaced.
import net from 'node:net';

/** A token of the right shape that no one was given: each request with it costs a lookup. */
const BOGUS = `pst_${'A'.repeat(43)}`;

export interface Flood {
  /** Status codes of the answers the flood got, by code. */
  answers: Map<number, number>;
  /** Answers that were not 401 or 503-with-Retry-After (their first line and headers). */
  unexpected: string[];
  stop(): Promise<void>;
}

/** `connections` connections at all times, each one request with the bogus token whose chunked
 *  body never ends; a connection answered is closed and replaced by a new one. */
export function startFlood(port: number, connections: number): Flood {
  const answers = new Map<number, number>();
  const unexpected: string[] = [];
  const open = new Set<net.Socket>();
  const closed: Promise<void>[] = [];
  let flooding = true;
  const connect = () => {
    const socket = net.connect(port, '127.0.0.1');
    open.add(socket);
    closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(head.slice(9, 12));
      answers.set(status, (answers.get(status) ?? 0) + 1);
      if (status !== 401 && !(status === 503 && /\r\nretry-after: \d+\r\n/i.test(head.slice(0, end + 2)))) unexpected.push(head.slice(0, end));
      head = '';
      socket.destroy();
    });
    socket.once('close', () => {
      open.delete(socket);
      if (flooding) connect();
    });
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${BOGUS}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n`,
    );
  };
  for (let index = 0; index < connections; index += 1) connect();
  return {
    answers,
    unexpected,
    async stop() {
      flooding = false;
      for (const socket of open) socket.destroy();
      await Promise.all(closed);
    },
  };
}
