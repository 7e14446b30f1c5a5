// The direct-to-MX relay against SMTP servers on loopback addresses (127.0.0.x and ::1, all on one
// port, as MX hosts all listen on 25) and a scripted resolver: which host is tried when, what is
// recorded about the session, and which DNS answers end a delivery. e2e/mx runs the same against a
// real DNS server.
import net from 'node:net';
import { createLogger, createMailResolver, type DnsQuery, type MailRecordType } from '@postern/shared';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineSmtpServer } from './line-smtp.testkit.ts';
import { createMxRelay } from './mx-relay.ts';
import type { OutboundMessage, Relay } from './relay.ts';

const ACCEPTING = '127.0.0.4';
const GREETS_421 = '127.0.0.3';
/** Nothing listens there: connections are refused. */
const REFUSING = '127.0.0.5';
/** Offers STARTTLS and then answers the handshake with garbage; accepts mail in plaintext. */
const BROKEN_TLS = '127.0.0.6';
/** Answers RCPT TO with a reply whose lines disagree: "250-OK" then "550 no such user". */
const MIXED_REPLY = '127.0.0.7';

type Records = Partial<Record<MailRecordType, unknown[] | string>>;

/** name -> type -> records, or an error code (ENOTFOUND, ENODATA, ETIMEOUT). */
const zone: Record<string, Records> = {
  'order.test': {
    MX: [
      { exchange: 'mx3.order.test', priority: 30 },
      { exchange: 'mx1.order.test', priority: 10 },
      { exchange: 'mx2.order.test', priority: 20 },
    ],
  },
  'mx1.order.test': { A: [REFUSING] },
  'mx2.order.test': { A: [GREETS_421] },
  'mx3.order.test': { A: [ACCEPTING] },
  'implicit.test': { MX: 'ENODATA', A: [ACCEPTING] },
  'v6.test': { MX: [{ exchange: 'mx.v6.test', priority: 10 }] },
  'mx.v6.test': { A: 'ENODATA', AAAA: ['::1'] },
  'null.test': { MX: [{ exchange: '', priority: 0 }] },
  'bare.test': { MX: 'ENODATA', A: 'ENODATA', AAAA: 'ENODATA' },
  'down.test': { MX: 'ETIMEOUT' },
  'dangling.test': { MX: [{ exchange: 'gone.dangling.test', priority: 10 }] },
  'oldtls.test': { MX: 'ENODATA', A: [BROKEN_TLS] },
  'mixed.test': { MX: 'ENODATA', A: [MIXED_REPLY] },
};

const query: DnsQuery = async (name, type) => {
  const records = zone[name]?.[type] ?? 'ENOTFOUND';
  if (typeof records === 'string') throw Object.assign(new Error(`query${type} ${records} ${name}`), { code: records });
  return { records: records as never, ttlSeconds: 0 };
};

const accepted: Array<{ to: string; secure: boolean }> = [];
const servers: Array<{ close(done: () => void): void }> = [];
let port = 0;
let relay: Relay;

function acceptingServer(): SMTPServer {
  // STARTTLS with smtp-server's built-in self-signed certificate: used, but not verifiable.
  const server = new SMTPServer({
    authOptional: true,
    logger: false,
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        for (const rcpt of session.envelope.rcptTo) accepted.push({ to: rcpt.address, secure: session.secure });
        callback(null, 'Ok: queued');
      });
    },
  });
  server.on('error', () => {});
  return server;
}

function listen(server: { listen(port: number, host: string, done: () => void): unknown; server?: net.Server }, host: string, at: number) {
  return new Promise<number>((resolve, reject) => {
    const target = server instanceof net.Server ? server : (server.server as net.Server);
    target.once('error', reject);
    server.listen(at, host, () => resolve((target.address() as net.AddressInfo).port));
  });
}

/** An SMTP server whose STARTTLS handshake always fails; plaintext sessions deliver. */
function brokenTlsServer(): net.Server {
  return lineSmtpServer({
    greeting: '220 oldtls.test ESMTP',
    ehlo: ['oldtls.test', 'STARTTLS'],
    onCommand(line, socket) {
      if (line.toUpperCase() !== 'STARTTLS') return false;
      socket.write('220 2.0.0 go ahead\r\n', () => socket.end('this is not a TLS record\r\n'));
      return true;
    },
    onMessage() {
      accepted.push({ to: 'j@oldtls.test', secure: false });
      return '250 2.0.0 queued in plaintext';
    },
  });
}

beforeAll(async () => {
  const first = acceptingServer();
  port = await listen(first, ACCEPTING, 0);
  servers.push(first);
  const v6 = acceptingServer();
  await listen(v6, '::1', port);
  servers.push(v6);
  const busy = net.createServer((socket) => socket.end('421 4.3.2 mx2 busy, try another host\r\n'));
  await listen(busy, GREETS_421, port);
  servers.push(busy);
  const oldTls = brokenTlsServer();
  await listen(oldTls, BROKEN_TLS, port);
  servers.push(oldTls);
  const mixed = lineSmtpServer({
    greeting: '220 mixed.test ESMTP',
    ehlo: ['mixed.test', 'PIPELINING'],
    onCommand(line, socket) {
      if (!line.toUpperCase().startsWith('RCPT')) return false;
      socket.write('250-OK\r\n550 5.1.1 no such user\r\n');
      return true;
    },
    onMessage() {
      accepted.push({ to: 'x@mixed.test', secure: false });
      return '250 2.0.0 queued';
    },
  });
  await listen(mixed, MIXED_REPLY, port);
  servers.push(mixed);
  relay = createMxRelay({
    resolver: createMailResolver({ servers: null, timeoutMs: 1_000, query }),
    port,
    // The MX hosts here are on loopback, as in a private network.
    privateAddresses: 'allow',
    localName: 'postern.test',
    timeoutMs: 2_000,
    sendDeadlineMs: 20_000,
    logger: createLogger('mx-relay-test', 'silent'),
  });
});

afterAll(async () => {
  await relay.close();
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

function message(recipient: string): OutboundMessage {
  return { deliveryId: recipient, envelopeFrom: 'sender@postern.test', recipient, raw: Buffer.from(`Subject: to ${recipient}\r\n\r\nhello\r\n`) };
}

describe('createMxRelay', () => {
  it('tries the MX hosts in priority order: past a refused connection and a 421 greeting to the one that accepts', async () => {
    const result = await relay.send(message('a@order.test'));
    expect(result).toMatchObject({ ok: true, reply: { code: 250 }, route: { host: 'mx3.order.test', address: ACCEPTING, port } });
    if (!result.ok) throw new Error('not sent');
    expect(result.route?.skipped).toEqual([
      expect.stringMatching(/^mx1\.order\.test\[127\.0\.0\.5\]: .*refused/i),
      expect.stringMatching(/^mx2\.order\.test\[127\.0\.0\.3\]: 421 4\.3\.2 mx2 busy/),
    ]);
    expect(accepted.filter((mail) => mail.to === 'a@order.test')).toHaveLength(1);
  });

  it('uses STARTTLS with a certificate it cannot verify, and records that', async () => {
    const result = await relay.send(message('tls@order.test'));
    // smtp-server's built-in certificate is self-signed for "localhost" (and long expired).
    expect(result).toMatchObject({ ok: true, route: { tls: { kind: 'unverified', protocol: expect.stringMatching(/^TLSv1\.[23]$/), problem: expect.stringMatching(/\S/) } } });
    expect(accepted.find((mail) => mail.to === 'tls@order.test')).toEqual({ to: 'tls@order.test', secure: true });
  });

  it('tries a host whose TLS handshake fails once more without TLS', async () => {
    const result = await relay.send(message('j@oldtls.test'));
    expect(result).toMatchObject({ ok: true, reply: { text: 'queued in plaintext' }, route: { host: 'oldtls.test', tls: { kind: 'none' } } });
    if (!result.ok) throw new Error('not sent');
    expect(result.route?.skipped).toEqual([expect.stringMatching(/^oldtls\.test\[127\.0\.0\.6\]: .*\(tried again without TLS\)$/)]);
  });

  it('delivers to the domain itself when it has no MX (implicit MX), and over IPv6', async () => {
    expect(await relay.send(message('b@implicit.test'))).toMatchObject({ ok: true, route: { host: 'implicit.test', address: ACCEPTING } });
    expect(await relay.send(message('c@v6.test'))).toMatchObject({ ok: true, route: { host: 'mx.v6.test', address: '::1' } });
  });

  it('fails for good on a null MX, on a domain that does not exist and on one with no MX, A or AAAA', async () => {
    expect(await relay.send(message('d@null.test'))).toMatchObject({ ok: false, failure: { kind: 'unroutable', category: 'null_mx', message: expect.stringContaining('null MX') } });
    expect(await relay.send(message('e@nowhere.test'))).toMatchObject({ ok: false, failure: { kind: 'unroutable', category: 'no_such_domain' } });
    expect(await relay.send(message('f@bare.test'))).toMatchObject({ ok: false, failure: { kind: 'unroutable', category: 'no_mail_host' } });
  });

  it('treats a failing lookup and an MX host that does not resolve as temporary', async () => {
    expect(await relay.send(message('g@down.test'))).toMatchObject({ ok: false, failure: { kind: 'dns', message: expect.stringContaining('ETIMEOUT') } });
    expect(await relay.send(message('h@dangling.test'))).toMatchObject({ ok: false, failure: { kind: 'dns' } });
  });

  it('with private addresses refused (the default), never connects to an MX host at a loopback or link-local address: a temporary failure that says why', async () => {
    zone['inside.test'] = { MX: [{ exchange: 'mx.inside.test', priority: 10 }, { exchange: 'metadata.inside.test', priority: 20 }] };
    zone['mx.inside.test'] = { A: [ACCEPTING], AAAA: ['::1'] };
    zone['metadata.inside.test'] = { A: ['169.254.169.254'], AAAA: 'ENODATA' };
    const guarded = createMxRelay({
      resolver: createMailResolver({ servers: null, timeoutMs: 1_000, query }),
      port,
      privateAddresses: 'refuse',
      localName: 'postern.test',
      timeoutMs: 2_000,
      sendDeadlineMs: 20_000,
      logger: createLogger('mx-relay-test', 'silent'),
    });
    try {
      const result = await guarded.send(message('k@inside.test'));
      expect(result).toMatchObject({ ok: false, failure: { kind: 'dns', dataSent: false, message: expect.stringMatching(/InvalidIpAddress: .*prohibited "loopback" address range/) } });
      expect(accepted.filter((mail) => mail.to === 'k@inside.test')).toHaveLength(0);
      // The same domain through the relay that allows them is delivered: only the guard differs.
      expect(await relay.send(message('k@inside.test'))).toMatchObject({ ok: true, route: { host: 'mx.inside.test' } });
    } finally {
      await guarded.close();
    }
  });

  it('takes a reply whose lines disagree for a protocol error: no data goes out, the send is retried, never sent', async () => {
    const result = await relay.send(message('x@mixed.test'));
    expect(result).toMatchObject({ ok: false, failure: { reply: null, category: 'malformed_reply', dataSent: false, route: { address: MIXED_REPLY } } });
    expect(accepted.filter((mail) => mail.to === 'x@mixed.test')).toEqual([]);
  });

  it("reports a domain whose every host refuses with the last host's reply, naming every host tried", async () => {
    zone['refusing.test'] = { MX: [{ exchange: 'mx1.order.test', priority: 10 }, { exchange: 'mx2.order.test', priority: 20 }] };
    const result = await relay.send(message('i@refusing.test'));
    expect(result).toMatchObject({ ok: false, failure: { kind: 'reply', reply: { code: 421 }, dataSent: false } });
    if (result.ok) throw new Error('sent');
    expect(result.failure.message).toMatch(/tried: mx1\.order\.test\[127\.0\.0\.5\]: .*; mx2\.order\.test\[127\.0\.0\.3\]: 421/);
  });
});
