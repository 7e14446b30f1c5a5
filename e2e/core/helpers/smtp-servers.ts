// SMTP servers that misbehave on purpose, inside the test process: scripted replies per recipient
// and attempt (4xx, 5xx, hang after DATA), a front door that swallows the first connections
// without a greeting before passing the rest to a real sink, a host that greets with a refusal, and
// a relay that accepts TCP and never says a word (its sessions can never be set up).
import net from 'node:net';
import { SMTPServer } from 'smtp-server';

export type Step = 'accept' | 'hang' | { code: number; message: string };

export interface ScriptedSmtp {
  port: number;
  /** AUTH attempts (with `auth`): the username given and whether the credentials matched. */
  logins: Array<{ username: string; ok: boolean }>;
  /** Messages accepted (250 after DATA), by recipient. */
  accepted: Map<string, number>;
  /** Every RCPT seen, by recipient (= attempts that got that far). */
  seen: Map<string, number>;
  /** Every message answered 250: envelope and the exact bytes received. */
  messages: Array<{ from: string; to: string[]; raw: Buffer }>;
  script(recipient: string, steps: Step[]): void;
  /** Hold every DATA without answering until released (for killing an engine mid-send). */
  holdAll(holding: boolean): void;
  /** Delay before each DATA answer. */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

function replyError(step: { code: number; message: string }): Error {
  const error = new Error(step.message) as Error & { responseCode: number };
  error.responseCode = step.code;
  return error;
}

/** Listens on `at` (default: 127.0.0.1, a port the OS picks): MX hosts of e2e/mx share one port on
 *  their own loopback addresses. With `starttls`, STARTTLS is offered with smtp-server's built-in
 *  self-signed certificate, or with `tls`'s key and certificate (PEM) when given. With `auth`
 *  (and `starttls`), AUTH is required before MAIL and offered only after STARTTLS, as a
 *  submission relay does; any other credentials are refused with 535. */
export async function startScriptedSmtp(
  at: { host: string; port: number } = { host: '127.0.0.1', port: 0 },
  { starttls = false, tls, auth }: { starttls?: boolean; tls?: { key: string; cert: string }; auth?: { username: string; password: string } } = {},
): Promise<ScriptedSmtp> {
  const logins: Array<{ username: string; ok: boolean }> = [];
  const scripts = new Map<string, Step[]>();
  const seen = new Map<string, number>();
  const accepted = new Map<string, number>();
  const messages: Array<{ from: string; to: string[]; raw: Buffer }> = [];
  let holding = false;
  let delayMs = 0;
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const stepFor = (recipient: string): Step => {
    const steps = scripts.get(recipient);
    return steps && steps.length > 0 ? (steps.shift() as Step) : 'accept';
  };
  const server = new SMTPServer({
    authOptional: !auth,
    disabledCommands: [...(auth ? [] : ['AUTH']), ...(starttls ? [] : ['STARTTLS'])],
    hideSTARTTLS: !starttls,
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    logger: false,
    onAuth(login, _session, callback) {
      const ok = login.username === auth?.username && login.password === auth?.password;
      logins.push({ username: login.username ?? '', ok });
      if (!ok) return callback(replyError({ code: 535, message: '5.7.8 Authentication credentials invalid' }));
      callback(null, { user: login.username });
    },
    onRcptTo(address, session, callback) {
      const recipient = address.address.toLowerCase();
      bump(seen, recipient);
      const step = stepFor(recipient);
      (session as unknown as { step: Step }).step = step;
      if (typeof step === 'object' && step.code < 600) return callback(replyError(step));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const step = (session as unknown as { step: Step }).step;
        if (step === 'hang' || holding) return; // never answer: the client times out after DATA
        const finish = () => {
          for (const rcpt of session.envelope.rcptTo) bump(accepted, rcpt.address.toLowerCase());
          const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
          messages.push({ from, to: session.envelope.rcptTo.map((rcpt) => rcpt.address.toLowerCase()), raw: Buffer.concat(chunks) });
          callback(null, 'Ok: queued');
        };
        if (delayMs > 0) setTimeout(finish, delayMs);
        else finish();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(at.port, at.host, resolve);
  });
  const port = (server.server.address() as net.AddressInfo).port;
  return {
    port,
    logins,
    accepted,
    seen,
    messages,
    script: (recipient, steps) => scripts.set(recipient.toLowerCase(), [...steps]),
    holdAll: (value) => {
      holding = value;
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Pipes `client` to a new connection to `upstream` both ways, each closing the other; returns that connection. */
function pipeTo(client: net.Socket, upstream: { host: string; port: number }, sockets: Set<net.Socket>): net.Socket {
  const target = net.connect(upstream.port, upstream.host);
  sockets.add(target);
  target.on('error', () => client.destroy());
  client.on('error', () => target.destroy());
  target.on('close', () => client.destroy());
  client.on('close', () => target.destroy());
  client.pipe(target);
  target.pipe(client);
  return target;
}

/** Accepts TCP connections and says nothing to the first `hangCount` of them (no greeting, ever);
 *  later connections are piped to the real server behind it. */
export async function startSilentFrontDoor(upstream: { host: string; port: number }, hangCount: number): Promise<{ port: number; hung: () => number; close(): Promise<void> }> {
  let hung = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (hung < hangCount) {
      hung += 1;
      return; // accepted, and then silence
    }
    pipeTo(client, upstream, sockets);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    hung: () => hung,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers every connection with `greeting` (e.g. "421 4.3.2 busy") and closes it, as an MX host
 *  that takes no mail right now; counts the connections. */
export async function startGreetingRefuser(at: { host: string; port: number }, greeting: string): Promise<{ connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    socket.on('error', () => {});
    socket.end(`${greeting}\r\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, resolve);
  });
  return { connections: () => connections, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Accepts every connection and never says a word; counts them. */
export async function startSilentRelay(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A relay's front door with Postfix's per-client connection limit (smtpd_client_connection_count_limit,
 *  kept by anvil): up to `limit` connections at once are piped to `upstream`; one more is greeted
 *  with `greeting` (Postfix's "421 4.7.0 <host> Error: too many connections from <address>") and
 *  closed. Counts the refused connections and the most it held at once. */
export async function startConnectionLimiter(
  upstream: { host: string; port: number },
  limit: number,
  greeting: string,
): Promise<{ port: number; refused: () => number; mostAtOnce: () => number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let open = 0;
  let mostAtOnce = 0;
  let refused = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (open >= limit) {
      refused += 1;
      client.end(`${greeting}\r\n`);
      return;
    }
    open += 1;
    mostAtOnce = Math.max(mostAtOnce, open);
    let counted = true;
    const release = () => {
      if (counted) open -= 1;
      counted = false;
    };
    client.on('close', release);
    pipeTo(client, upstream, sockets).on('close', release);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    refused: () => refused,
    mostAtOnce: () => mostAtOnce,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
