import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logging/logger.ts';
import { createMetricsRegistry, prometheus } from '../metrics/registry.ts';
import { type OpsServer, startOpsServer } from './ops-server.ts';

const logger = createLogger('test', 'silent');
let server: OpsServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(readiness: Record<string, () => Promise<void>>) {
  const registry = createMetricsRegistry('test');
  new prometheus.Counter({ name: 'test_things_total', help: 'things', registers: [registry] }).inc(3);
  server = await startOpsServer({ addr: { host: '127.0.0.1', port: 0 }, logger, registry, readiness, checkTimeoutMs: 200 });
  return `http://127.0.0.1:${server.address.port}`;
}

describe('ops server', () => {
  it('answers /healthz, and /readyz 200 when every check passes', async () => {
    const base = await start({ database: async () => {} });
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'alive' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok' } });
  });

  it('answers /readyz 503 with the reason of each failing or hanging check', async () => {
    const base = await start({
      database: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      },
      redis: () => new Promise(() => {}),
      templates: async () => {},
    });
    const response = await fetch(`${base}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      status: 'not_ready',
      checks: { database: 'connect ECONNREFUSED 127.0.0.1:5432', redis: 'no answer within 200 ms', templates: 'ok' },
    });
  });

  it('exports what /readyz found as gauges, and answers /metrics while a check hangs', async () => {
    let hang = false;
    const base = await start({
      database: async () => {
        if (hang) await new Promise(() => {});
      },
    });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^mail_readiness_check_ok\{check="database",app="test"\} 1$/m);
    hang = true;
    const readyz = fetch(`${base}/readyz`);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^mail_process_ready\{app="test"\} 1$/m);
    expect((await readyz).status).toBe(503);
    const after = await (await fetch(`${base}/metrics`)).text();
    expect(after).toMatch(/^mail_process_ready\{app="test"\} 0$/m);
    expect(after).toMatch(/^mail_readiness_check_ok\{check="database",app="test"\} 0$/m);
  });

  it('serves Prometheus text on /metrics and JSON 404 elsewhere', async () => {
    const base = await start({});
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    expect(await metrics.text()).toMatch(/test_things_total\{app="test"\} 3/);
    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('lets an app answer its own routes first', async () => {
    const registry = createMetricsRegistry('test');
    server = await startOpsServer({
      addr: { host: '127.0.0.1', port: 0 },
      logger,
      registry,
      readiness: {},
      handle: (request, response) => {
        if (request.url !== '/hello') return false;
        response.end('hi');
        return true;
      },
    });
    expect(await (await fetch(`http://127.0.0.1:${server.address.port}/hello`)).text()).toBe('hi');
  });

  describe('a client that is slow or goes away', () => {
    /** A raw connection that sent `bytes` and keeps quiet; resolves with what the server answered once it closed it. */
    /** The JSON body of a whole raw answer, checked against its Content-Length. */
    function jsonBodyOf(answer: string): unknown {
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      expect(Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1])).toBe(Buffer.byteLength(body, 'latin1'));
      return JSON.parse(body);
    }

    function openQuiet(port: number, bytes: string): Promise<string> {
      return new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
        let answer = '';
        socket.on('data', (chunk) => {
          answer += chunk.toString('latin1');
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(answer));
      });
    }

    async function startReadingBodies(options: {
      headersTimeoutMs?: number;
      requestTimeoutMs?: number;
      maxConnections?: number;
      lines?: string[];
      held?: Promise<void>;
      holding?: () => void;
    }) {
      const lines = options.lines ?? [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      });
      server = await startOpsServer({
        addr: { host: '127.0.0.1', port: 0 },
        logger: createLogger('test', 'debug', { destination: sink }),
        registry: createMetricsRegistry('test'),
        readiness: {},
        headersTimeoutMs: options.headersTimeoutMs,
        requestTimeoutMs: options.requestTimeoutMs,
        maxConnections: options.maxConnections,
        // Like /graphql: the whole body is read before anything is answered.
        handle: async (request, response) => {
          if (request.url === '/hold') {
            options.holding?.();
            await options.held;
            response.end('done');
            return true;
          }
          if (request.url !== '/upload' && request.url !== '/upload-later') return false;
          // As a request queued behind others on its connection (pipelined) is: read only after its
          // client has gone.
          if (request.url === '/upload-later' && !request.socket.destroyed) await once(request.socket, 'close');
          let size = 0;
          for await (const chunk of request) size += (chunk as Buffer).length;
          response.end(String(size));
          return true;
        },
      });
      return server.address.port;
    }

    // Node's own limits (headersTimeout 60 s, requestTimeout 300 s, checked every 30 s) let one
    // client hold a connection for a minute and a half by never finishing its headers, five by
    // trickling a body: measured 2,000 such connections from one client, all held 83-86 s.
    it('closes a connection whose request headers do not end within headersTimeoutMs', async () => {
      const port = await startReadingBodies({ headersTimeoutMs: 200, requestTimeoutMs: 60_000 });
      const answer = await openQuiet(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a');
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(jsonBodyOf(answer)).toEqual({ error: 'request_timeout', message: 'the request did not arrive in time' });
    }, 10_000);

    it('closes a connection whose request body does not end within requestTimeoutMs', async () => {
      const port = await startReadingBodies({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
      const answer = await openQuiet(port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b');
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(jsonBodyOf(answer)).toEqual({ error: 'request_timeout', message: 'the request did not arrive in time' });
    }, 10_000);

    // Node answers what it cannot parse itself, with a status line and nothing else; every other
    // answer of these servers says what was wrong in JSON.
    it.each([
      ['an unparsable request line', 'BLAH\x01 / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request', /^the request is not HTTP\/1\.1 \(HPE_INVALID_METHOD: Invalid method encountered\)$/],
      ['a bare LF inside a header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\n2\r\n\r\n', 400, 'bad_request', /^the request is not HTTP\/1\.1 \(HPE_/],
      ['headers over 16 KiB', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'request_header_fields_too_large', /^request headers over 16 KiB$/],
    ])('answers %s with a JSON reason and closes', async (_, request, status, error, message) => {
      const port = await startReadingBodies({});
      const answer = await openQuiet(port, request);
      expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer).toMatch(/\r\ncontent-type: application\/json; charset=utf-8\r\n/i);
      expect(answer).toMatch(/\r\nconnection: close\r\n/i);
      const body = jsonBodyOf(answer) as { error: string; message: string };
      expect(body.error).toBe(error);
      expect(body.message).toMatch(message);
    });

    // A body cut short (a client closing, a chunked framing error Node drops the socket for), or a
    // whole request not yet read when its client closed (20,000 pipelined /graphql requests, then
    // close: 8,630 lines), ended in "request failed" at error level with a stack: any client could
    // write error lines at will.
    it.each([
      ['in the middle of its body', 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b'],
      ['before its whole request is read', 'POST /upload-later HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nall of ten'],
    ])('logs a client that goes away %s below error level', async (_, request) => {
      const lines: string[] = [];
      const port = await startReadingBodies({ lines });
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(request, () => socket.destroy());
        });
        socket.on('error', reject);
        socket.on('close', () => resolve());
      });
      // Either way the server says something about the request; wait for that.
      const logged = () => lines.some((line) => line.includes('client went away') || JSON.parse(line).level >= 50);
      const deadline = Date.now() + 3_000;
      while (!logged() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(lines.filter((line) => JSON.parse(line).level >= 50).map((line) => JSON.parse(line).msg)).toEqual([]);
      expect(lines.some((line) => line.includes('client went away'))).toBe(true);
    });

    /** Resolves when the server holds `count` connections (or after 3 s: the test then fails on what follows). */
    async function connectionsReach(count: number): Promise<void> {
      const deadline = Date.now() + 3_000;
      while (server && (await new Promise<number>((resolve) => server?.server.getConnections((_, open) => resolve(open)))) !== count && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }

    async function shed(port: number): Promise<string[]> {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { connection: 'close' } })).text();
      return text.split('\n').filter((line) => line.startsWith('mail_http_connections_shed_total{'));
    }

    // Connections were not capped: each is a file descriptor, and one client holding thousands
    // (each within the timeouts above) would leave none for the database pool. A plain cap
    // (server.maxConnections) refuses the newest connection, which is the probe's or Prometheus's
    // while the flood lasts: here the oldest connection not being answered makes room instead.
    it('at the limit, a new connection is served by closing the oldest one not being answered', async () => {
      const port = await startReadingBodies({ headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, maxConnections: 3 });
      const quiet = [openQuiet(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a')];
      await connectionsReach(1);
      quiet.push(openQuiet(port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b'));
      await connectionsReach(2);
      quiet.push(openQuiet(port, ''));
      await connectionsReach(3);
      const probe = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { connection: 'close' } });
      expect(probe.status).toBe(200);
      // The oldest went, unanswered; the others are still open.
      expect(await quiet[0]).toBe('');
      let settled = 0;
      for (const connection of quiet.slice(1)) void connection.then(() => (settled += 1));
      await connectionsReach(2);
      expect(settled).toBe(0);
      expect(await shed(port)).toEqual(expect.arrayContaining([expect.stringMatching(/^mail_http_connections_shed_total\{outcome="evicted".*\} [12]$/)]));
    }, 10_000);

    it('at the limit with every connection being answered, a new connection is closed unanswered', async () => {
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      let holding = 0;
      const port = await startReadingBodies({ headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, maxConnections: 2, held, holding: () => (holding += 1) });
      const answers = [1, 2].map(() => openQuiet(port, 'GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      const deadline = Date.now() + 3_000;
      while (holding < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await openQuiet(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toBe('');
      release();
      for (const answer of await Promise.all(answers)) expect(answer).toMatch(/^HTTP\/1\.1 200 [\s\S]*done$/);
      expect(await shed(port)).toEqual(expect.arrayContaining([expect.stringMatching(/^mail_http_connections_shed_total\{outcome="refused".*\} 1$/)]));
    }, 10_000);

    // SIGTERM waited for them: one connection trickling its headers or body kept the API from
    // stopping for the whole MAIL_SHUTDOWN_TIMEOUT (measured: 31.5 s, ending in "shutdown deadline
    // passed: exiting with work unfinished"). A request not yet received has started no work.
    it('closes at once, cutting off requests still arriving and finishing the ones being answered', async () => {
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const port = await startReadingBodies({ headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, held });
      const answered = fetch(`http://127.0.0.1:${port}/hold`).then((response) => response.text());
      const headers = openQuiet(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a');
      const body = openQuiet(port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b');
      // Every connection has reached the server: the answer in progress holds its request.
      const deadline = Date.now() + 3_000;
      while (server && (await new Promise<number>((resolve) => server?.server.getConnections((_, count) => resolve(count)))) < 3 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const closed = (server as OpsServer).close();
      await Promise.all([headers, body]);
      release();
      expect(await answered).toBe('done');
      await closed;
      server = undefined;
    }, 10_000);
  });
});
