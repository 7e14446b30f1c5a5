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
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamHost: string, upstreamPort: number): Promise<TcpProxy> {
  let target = { host: upstreamHost, port: upstreamPort };
  let refusing = false;
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
    upstream.pipe(client);
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
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
