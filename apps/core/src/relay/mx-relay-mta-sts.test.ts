// The direct-to-MX relay under a recipient domain's MTA-STS policy (a scripted one here; the
// lookup itself is mta-sts.test.ts): enforce passes over an unlisted host without handing it
// anything and refuses plaintext and an unverifiable certificate, ending deferred (mta_sts) even
// when the host answers STARTTLS with a 5xx; testing delivers and reports each shortfall; an
// unreadable cache defers. e2e/mx/mta-sts runs it with real certificates and a real DNS server.
import type net from 'node:net';
import { createLogger, createMailResolver, type DnsQuery, type MailRecordType } from '@postern/shared';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MtaSts, StsFailure, StsPolicy } from './mta-sts.ts';
import { createMxRelay } from './mx-relay.ts';
import type { OutboundMessage, Relay } from './relay.ts';

/** Plaintext only: answers STARTTLS with 5xx (smtp-server's "command not recognized"). */
const PLAIN = '127.0.0.41';
/** STARTTLS with smtp-server's built-in certificate: self-signed, for another name. */
const SELF_SIGNED = '127.0.0.42';

const zone: Record<string, Partial<Record<MailRecordType, unknown[] | string>>> = {
  'sts.test': {
    MX: [
      { exchange: 'mx1.sts.test', priority: 10 },
      { exchange: 'mx2.sts.test', priority: 20 },
    ],
  },
  'mx1.sts.test': { A: [PLAIN] },
  'mx2.sts.test': { A: [SELF_SIGNED] },
};
const query: DnsQuery = async (name, type) => {
  const records = zone[name]?.[type] ?? 'ENOTFOUND';
  if (typeof records === 'string') throw Object.assign(new Error(`query${type} ${records} ${name}`), { code: records });
  return { records: records as never, ttlSeconds: 0 };
};

const accepted: Array<{ to: string; host: string }> = [];
const servers: SMTPServer[] = [];
let port = 0;

function sink(host: string, starttls: boolean): SMTPServer {
  const server = new SMTPServer({
    authOptional: true,
    logger: false,
    disabledCommands: starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideSTARTTLS: !starttls,
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        for (const rcpt of session.envelope.rcptTo) accepted.push({ to: rcpt.address, host });
        callback(null, 'Ok: queued');
      });
    },
  });
  server.on('error', () => {});
  return server;
}

function listen(server: SMTPServer, host: string, at: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(at, host, () => resolve((server.server.address() as net.AddressInfo).port));
  });
}

/** A policy source the test sets, recording what the relay reports. */
let policy: StsPolicy | Error | null = null;
const reported: Array<{ reason: StsFailure; detail: string }> = [];
const mtaSts: MtaSts = {
  policyFor: async () => {
    if (policy instanceof Error) throw policy;
    return policy;
  },
  failed: (_policy, reason, detail) => {
    reported.push({ reason, detail });
  },
};

let relay: Relay;

beforeAll(async () => {
  const plain = sink(PLAIN, false);
  port = await listen(plain, PLAIN, 0);
  const selfSigned = sink(SELF_SIGNED, true);
  await listen(selfSigned, SELF_SIGNED, port);
  servers.push(plain, selfSigned);
  relay = createMxRelay({
    resolver: createMailResolver({ servers: null, timeoutMs: 1_000, query }),
    port,
    // The MX hosts here are on loopback, as in a private network.
    privateAddresses: 'allow',
    localName: 'postern.test',
    timeoutMs: 2_000,
    sendDeadlineMs: 20_000,
    logger: createLogger('mx-relay-test', 'silent'),
    mtaSts,
  });
});

afterAll(async () => {
  await relay.close();
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

beforeEach(() => {
  reported.length = 0;
});

function message(recipient: string): OutboundMessage {
  return { deliveryId: recipient, envelopeFrom: 'sender@postern.test', recipient, raw: Buffer.from(`Subject: to ${recipient}\r\n\r\nhello\r\n`) };
}

describe('createMxRelay with MTA-STS', () => {
  it('enforce: passes over an unlisted host and one whose certificate does not verify, and defers', async () => {
    policy = { domain: 'sts.test', id: '1', mode: 'enforce', mx: ['mx2.sts.test'] };
    const result = await relay.send(message('a@sts.test'));
    expect(result).toMatchObject({ ok: false, failure: { kind: 'other', category: 'mta_sts', reply: null, dataSent: false } });
    if (result.ok) throw new Error('sent');
    expect(result.failure.message).toMatch(
      /^MTA-STS policy of sts\.test \(enforce\): EPOLICY: no MX host satisfies it \(tried: mx1\.sts\.test\[127\.0\.0\.41\]: not an MX host the MTA-STS policy lists; mx2\.sts\.test\[127\.0\.0\.42\]: TLS not verified, which the MTA-STS policy requires/,
    );
    expect(reported.map((report) => report.reason)).toEqual(['mx_not_listed', 'tls_invalid']);
    expect(accepted.filter((mail) => mail.to === 'a@sts.test')).toEqual([]);
  });

  it('enforce: a host that answers STARTTLS with a 5xx is passed over, and the attempt only deferred', async () => {
    policy = { domain: 'sts.test', id: '1', mode: 'enforce', mx: ['mx1.sts.test'] };
    zone['sts.test'] = { MX: [{ exchange: 'mx1.sts.test', priority: 10 }] };
    try {
      const result = await relay.send(message('b@sts.test'));
      expect(result).toMatchObject({ ok: false, failure: { category: 'mta_sts', reply: null } });
      if (result.ok) throw new Error('sent');
      expect(result.failure.message).toMatch(/mx1\.sts\.test\[127\.0\.0\.41\]: no STARTTLS, which the MTA-STS policy requires \(5\d\d /);
      expect(reported.map((report) => report.reason)).toEqual(['tls_missing']);
    } finally {
      zone['sts.test'] = { MX: [{ exchange: 'mx1.sts.test', priority: 10 }, { exchange: 'mx2.sts.test', priority: 20 }] };
    }
  });

  it('testing: delivers as without a policy and reports what enforce would have refused', async () => {
    policy = { domain: 'sts.test', id: '1', mode: 'testing', mx: ['mx2.sts.test'] };
    const result = await relay.send(message('c@sts.test'));
    expect(result).toMatchObject({ ok: true, route: { host: 'mx1.sts.test', tls: { kind: 'none' } } });
    expect(reported.map((report) => report.reason)).toEqual(['mx_not_listed', 'tls_missing']);
    expect(accepted.filter((mail) => mail.to === 'c@sts.test')).toEqual([{ to: 'c@sts.test', host: PLAIN }]);
  });

  it('defers when the policy cache cannot be read', async () => {
    policy = new Error('connection terminated');
    expect(await relay.send(message('d@sts.test'))).toMatchObject({
      ok: false,
      failure: { kind: 'connection', category: 'mta_sts', message: 'MTA-STS policy cache unreadable: connection terminated' },
    });
  });

  it('no policy: opportunistic as ever', async () => {
    policy = null;
    expect(await relay.send(message('e@sts.test'))).toMatchObject({ ok: true, route: { host: 'mx1.sts.test' } });
    expect(reported).toEqual([]);
  });
});
