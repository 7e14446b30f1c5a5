// MTA-STS policy matching (RFC 8461 4.1: exact names, a wildcard of one left-most label) and the
// policy lookup against a real HTTPS policy host on a loopback address, with a certificate from a
// CA the test makes and trusts, and a scripted resolver: a policy fetched once and then reused
// while its id is unchanged; the cached policy applied when the policy host is down; a redirect
// and an untrusted certificate refused; nothing cached means no policy, counted.
import type http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { createLogger, createMailResolver, createMetricsRegistry, type DnsQuery, type MailRecordType } from '@postern/shared';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMtaSts, createMtaStsMetrics, type MtaStsStore, mxListed, type StoredPolicy } from './mta-sts.ts';
import { createTestCa, type TestCa } from './test-ca.testkit.ts';

describe('mxListed (RFC 8461 4.1)', () => {
  const policy = { mode: 'enforce' as const, mx: ['mail.example.com', '*.mx.example.net'] };
  it.each([
    ['mail.example.com', true],
    ['MAIL.Example.COM.', true],
    ['a.mx.example.net', true],
    ['B-2.mx.example.net', true],
    // A wildcard covers exactly one label: not two, not none.
    ['a.b.mx.example.net', false],
    ['mx.example.net', false],
    ['.mx.example.net', false],
    ['other.example.com', false],
    ['mail.example.com.evil.test', false],
    ['xmail.example.com', false],
    ['', false],
    ['*.mx.example.net', false],
  ])('%s -> %s', (host, listed) => {
    expect(mxListed(policy, host)).toBe(listed);
  });
});

const POLICY_HOST = '127.0.0.31';
const UNTRUSTED_HOST = '127.0.0.32';
const DOWN_HOST = '127.0.0.33';

/** name -> type -> records or an error code; changed by the tests. */
const zone: Record<string, Partial<Record<MailRecordType, unknown[] | string>>> = {};
const query: DnsQuery = async (name, type) => {
  const records = zone[name]?.[type] ?? 'ENOTFOUND';
  if (typeof records === 'string') throw Object.assign(new Error(`query${type} ${records} ${name}`), { code: records });
  return { records: records as never, ttlSeconds: 0 };
};

const policies: Record<string, { status: number; body: string; headers?: Record<string, string> }> = {};
const requests: string[] = [];
let ca: TestCa;
let untrust: () => void;
let servers: https.Server[] = [];
let port = 0;

function listen(server: https.Server, host: string, at: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}

beforeAll(async () => {
  ca = createTestCa();
  const other = createTestCa('a CA nobody trusts');
  untrust = ca.trust();
  const serve = (request: http.IncomingMessage, response: http.ServerResponse) => {
    const domain = (request.headers.host ?? '').replace(/^mta-sts\./, '').replace(/:\d+$/, '');
    requests.push(`${domain} ${request.url}`);
    const answer = policies[domain] ?? { status: 404, body: 'not found' };
    response.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
    response.end(answer.body);
  };
  const names = ['mta-sts.enforce.test', 'mta-sts.redirect.test', 'mta-sts.untrusted.test', 'mta-sts.down.test'];
  const good = https.createServer({ ...ca.issue(names) }, serve);
  const bad = https.createServer({ ...other.issue(names) }, serve);
  port = await listen(good, POLICY_HOST, 0);
  await listen(bad, UNTRUSTED_HOST, port);
  servers = [good, bad];
});

afterAll(async () => {
  untrust?.();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

function memoryStore(): MtaStsStore & { rows: Map<string, StoredPolicy> } {
  const rows = new Map<string, StoredPolicy>();
  return {
    rows,
    get: async (domain) => rows.get(domain) ?? null,
    set: async (domain, policy) => {
      rows.set(domain, JSON.parse(JSON.stringify(policy)));
    },
  };
}

const ENFORCE = 'version: STSv1\nmode: enforce\nmx: mx.enforce.test\nmx: *.backup.enforce.test\nmax_age: 86400\n';

describe('createMtaSts: the policy a send follows', () => {
  let store: ReturnType<typeof memoryStore>;
  let metrics: ReturnType<typeof createMtaStsMetrics>;
  let registry: ReturnType<typeof createMetricsRegistry>;
  // The policy hosts here are on loopback addresses: allowed, as MAIL_MX_PRIVATE_ADDRESSES=allow does,
  // except in the tests of the refusal below.
  const mtaSts = (privateAddresses: 'refuse' | 'allow' = 'allow', logger = createLogger('test', 'silent')) =>
    createMtaSts({
      resolver: createMailResolver({ servers: null, query, timeoutMs: 1_000 }),
      store,
      port,
      timeoutMs: 5_000,
      privateAddresses,
      logger,
      metrics,
    });
  const lookups = async (outcome: string) => (await metrics.lookups.get()).values.find((value) => value.labels.outcome === outcome)?.value ?? 0;

  beforeEach(() => {
    store = memoryStore();
    registry = createMetricsRegistry('core');
    metrics = createMtaStsMetrics(registry);
    requests.length = 0;
    for (const name of Object.keys(zone)) delete zone[name];
    zone['_mta-sts.enforce.test'] = { TXT: [['v=STSv1; id=20261127a;']] };
    zone['mta-sts.enforce.test'] = { A: [POLICY_HOST] };
    zone['_mta-sts.redirect.test'] = { TXT: [['v=STSv1; id=1;']] };
    zone['mta-sts.redirect.test'] = { A: [POLICY_HOST] };
    zone['_mta-sts.untrusted.test'] = { TXT: [['v=STSv1; id=1;']] };
    zone['mta-sts.untrusted.test'] = { A: [UNTRUSTED_HOST] };
    zone['_mta-sts.down.test'] = { TXT: [['v=STSv1; id=2;']] };
    zone['mta-sts.down.test'] = { A: [DOWN_HOST] };
    policies['enforce.test'] = { status: 200, body: ENFORCE };
    policies['redirect.test'] = { status: 302, body: '', headers: { location: 'https://elsewhere.test/' } };
    policies['untrusted.test'] = { status: 200, body: ENFORCE };
  });

  it('is no policy, without any HTTPS request, for a domain without an _mta-sts record', async () => {
    expect(await mtaSts().policyFor('plain.test')).toBeNull();
    expect(requests).toEqual([]);
    expect(await lookups('none')).toBe(1);
  });

  it('fetches the policy once, caches it, and reuses it while the TXT record keeps its id', async () => {
    const sts = mtaSts();
    const policy = await sts.policyFor('enforce.test');
    expect(policy).toEqual({ domain: 'enforce.test', id: '20261127a', mode: 'enforce', mx: ['mx.enforce.test', '*.backup.enforce.test'] });
    expect(store.rows.get('enforce.test')).toMatchObject({ id: '20261127a', mode: 'enforce', maxAge: 86400 });
    expect(await sts.policyFor('enforce.test')).toEqual(policy);
    expect(requests).toEqual(['enforce.test /.well-known/mta-sts.txt']);
    expect(await lookups('fetched')).toBe(1);
    expect(await lookups('unchanged')).toBe(1);
  });

  it('applies the cached policy when the policy host is down (and when the TXT lookup fails)', async () => {
    store.rows.set('down.test', { id: '1', mode: 'enforce', mx: ['mx.down.test'], maxAge: 86400, expires: new Date(Date.now() + 86_400_000).toISOString() });
    const sts = mtaSts();
    // A new id is published, and its policy cannot be fetched: nothing listens on DOWN_HOST.
    expect(await sts.policyFor('down.test')).toMatchObject({ id: '1', mode: 'enforce', mx: ['mx.down.test'] });
    zone['_mta-sts.down.test'] = { TXT: 'ESERVFAIL' };
    expect(await sts.policyFor('down.test')).toMatchObject({ id: '1', mode: 'enforce' });
    expect(await lookups('failed_cached')).toBe(2);
    expect(store.rows.get('down.test')).toMatchObject({ id: '1', mode: 'enforce' });
  });

  it('refuses a redirect and an untrusted certificate: with nothing cached, no policy, counted', async () => {
    const sts = mtaSts();
    expect(await sts.policyFor('redirect.test')).toBeNull();
    expect(await sts.policyFor('untrusted.test')).toBeNull();
    expect(await sts.policyFor('down.test')).toBeNull();
    expect(await lookups('failed_none')).toBe(3);
    // Marked for every engine, so that a broken policy host is not asked on every send.
    expect(store.rows.get('redirect.test')).toMatchObject({ id: '1', mode: 'none' });
    expect(requests).toEqual(['redirect.test /.well-known/mta-sts.txt']);
  });

  it('does not fetch from a policy host at a private address when they are refused: a failed lookup, counted and logged, the cached policy kept', async () => {
    const lines: Array<{ msg: string; err?: { code?: string; message?: string } }> = [];
    const logger = createLogger('test', 'info', { destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const sts = mtaSts('refuse', logger);
    // Loopback for A, loopback and unique-local for AAAA: nothing left to connect to.
    zone['mta-sts.enforce.test'] = { A: [POLICY_HOST], AAAA: ['::1', 'fd00::1'] };
    expect(await sts.policyFor('enforce.test')).toBeNull();
    // No A record, a link-local AAAA; an IPv4-mapped loopback spelled as IPv6.
    zone['mta-sts.redirect.test'] = { AAAA: ['fe80::1'] };
    expect(await sts.policyFor('redirect.test')).toBeNull();
    // (and an answer that is no address at all: a name, a NUL, an octal spelling)
    zone['mta-sts.untrusted.test'] = { A: ['localhost', '127.0.0.1\u0000', '0177.0.0.1'], AAAA: ['::ffff:127.0.0.32'] };
    expect(await sts.policyFor('untrusted.test')).toBeNull();
    expect(requests).toEqual([]);
    expect(await lookups('failed_none')).toBe(3);
    const refusals = lines.filter((line) => line.err?.code === 'EPRIVATEADDR');
    expect(refusals).toHaveLength(3);
    expect(refusals[0]?.err?.message).toContain('mta-sts.enforce.test resolves only to addresses refused by MAIL_MX_PRIVATE_ADDRESSES=refuse');
    expect(refusals[0]?.err?.message).toContain('127.0.0.31');
    expect(refusals[0]?.err?.message).toContain('fd00::1');
    // A policy already cached for the domain still applies (RFC 8461: a failed fetch keeps it).
    store.rows.set('down.test', { id: '1', mode: 'enforce', mx: ['mx.down.test'], maxAge: 86400, expires: new Date(Date.now() + 86_400_000).toISOString() });
    zone['mta-sts.down.test'] = { A: ['10.1.2.3', '169.254.169.254'] };
    expect(await sts.policyFor('down.test')).toMatchObject({ id: '1', mode: 'enforce', mx: ['mx.down.test'] });
    expect(await lookups('failed_cached')).toBe(1);
    // A policy host without any address is still "no policy host", not a refusal.
    zone['_mta-sts.plain.test'] = { TXT: [['v=STSv1; id=9;']] };
    expect(await sts.policyFor('plain.test')).toBeNull();
    expect(await lookups('none')).toBe(1);
  });

  it('skips the private addresses of a policy host that also has another one', async () => {
    // Allowed, the first address (the loopback policy host) is fetched from.
    zone['mta-sts.enforce.test'] = { A: [POLICY_HOST, '192.0.2.10'] };
    expect(await mtaSts('allow').policyFor('enforce.test')).toMatchObject({ id: '20261127a' });
    expect(requests).toHaveLength(1);
    // Refused, mailauth is handed 192.0.2.10 alone (nothing answers there): the loopback host is not asked.
    store.rows.clear();
    expect(await mtaSts('refuse').policyFor('enforce.test')).toBeNull();
    expect(requests).toHaveLength(1);
    expect(await lookups('failed_none')).toBe(1);
  });

  it('shares one lookup between concurrent sends to a domain', async () => {
    const sts = mtaSts();
    const all = await Promise.all([sts.policyFor('enforce.test'), sts.policyFor('enforce.test'), sts.policyFor('enforce.test')]);
    expect(all.map((policy) => policy?.id)).toEqual(['20261127a', '20261127a', '20261127a']);
    expect(requests).toHaveLength(1);
  });

  it('counts a host that fails the policy by mode and reason', async () => {
    const sts = mtaSts();
    sts.failed({ domain: 'enforce.test', id: '1', mode: 'testing', mx: [] }, 'tls_missing', 'mx[127.0.0.1]: no TLS');
    const values = (await metrics.failures.get()).values;
    expect(values.find((value) => value.labels.mode === 'testing' && value.labels.reason === 'tls_missing')?.value).toBe(1);
    // Every series is there from the start, at 0: an alert on increase() sees the first one.
    expect(await registry.metrics()).toMatch(/^mail_mta_sts_policy_failures_total\{mode="enforce",reason="mx_not_listed"[^}]*\} 0$/m);
  });
});
