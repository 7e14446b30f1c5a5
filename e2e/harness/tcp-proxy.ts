// A TCP proxy in front of a container: the code under test keeps one stable address while the
// test stops, restarts (new mapped port) or cuts the real server behind it. Faults stay real:
// the container really stops; the proxy only gives it a fixed front door.
import net from 'node:net';

export interface TcpProxy {
  host: string;
  port: number;
  /** Point new connections at another upstream (after a container restart). */
  retarget(host: string, port: number): void;
  /** Destroy every open connection, as a network cut would. */
  cutConnections(): void;
  /** Refuse (reset) new connections until resumed. */
  refuse(refusing: boolean): void;
  /** Hold every chunk the upstream sends this long before passing it on, as a slow server or link
   *  would (0: at once). Applies to open connections too; chunks never overtake each other. */
  delayReplies(ms: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamHost: string, upstreamPort: number): Promise<TcpProxy> {
  let target = { host: upstreamHost, port: upstreamPort };
  let refusing = false;
  let replyDelayMs = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const finish = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', finish).on('close', finish);
    upstream.on('error', finish).on('close', finish);
    client.pipe(upstream);
    // Chunks wait in order in one queue with one timer: a changed delay never reorders them. The
    // upstream's end is queued behind its last chunk (null).
    const queue: { due: number; chunk: Buffer | null }[] = [];
    let timer: NodeJS.Timeout | null = null;
    const pump = () => {
      timer = null;
      for (let next = queue[0]; next && next.due <= Date.now(); next = queue[0]) {
        queue.shift();
        if (client.destroyed) continue;
        if (next.chunk === null) client.end();
        else if (!client.write(next.chunk) && !upstream.isPaused()) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      }
      if (queue[0]) timer = setTimeout(pump, queue[0].due - Date.now());
    };
    const enqueue = (chunk: Buffer | null) => {
      queue.push({ due: Date.now() + replyDelayMs, chunk });
      if (timer === null) pump();
    };
    upstream.on('data', (chunk: Buffer) => enqueue(chunk));
    upstream.on('end', () => enqueue(null));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port: address.port,
    retarget(host, port) {
      target = { host, port };
    },
    cutConnections() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    refuse(value) {
      refusing = value;
    },
    delayReplies(ms) {
      replyDelayMs = ms;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
