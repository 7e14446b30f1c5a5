// MTA-STS (RFC 8461) in direct delivery, against a real DNS server (dnsmasq: the `_mta-sts` TXT
// records, MX and A records) and, in the test process, an HTTPS policy host and MX hosts with
// STARTTLS, whose certificates come from a CA the test makes and trusts (as NODE_EXTRA_CA_CERTS
// makes a deployment trust one). The policy host listens on its own port (MAIL_MTA_STS_PORT), the
// MX hosts share MAIL_MX_PORT on their own loopback addresses.
// Proves: enforce delivers to a listed MX host over verified TLS, passing over a listed host whose
// certificate names another host (wildcard policy); enforce refuses an MX host the policy does not
// list, one without STARTTLS and one whose certificate is for another name — deferred with the
// reason, then dead-lettered when the ladder is spent, nothing ever handed to them; testing mode
// delivers and counts what enforce would have refused; a cached policy is applied when its policy
// host is down (the expired policy is fetched again and cannot be).
import https from 'node:https';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestCa } from '../../apps/core/src/relay/test-ca.testkit.ts';
import { attemptsOf, deliveryRow, metricsText, metricValue, queueDelivery, startTestEngine, waitForStatus } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

const POLICY_HOST = '127.0.26.1';
/** A policy host of its own, closed by the cache test. */
const CACHED_POLICY_HOST = '127.0.26.2';
/** STARTTLS with a certificate for every mx*.sts.test name used below. */
const GOOD = '127.0.26.3';
/** STARTTLS with a valid certificate, for a name no enforce policy lists. */
const ROGUE = '127.0.26.4';
/** STARTTLS with a certificate from the trusted CA, but for another name. */
const WRONG_NAME = '127.0.26.5';
/** No STARTTLS. */
const PLAIN = '127.0.26.6';

const LADDER_STEPS = 2;

let db: TestDatabase;
let dns: DnsServer;
let engine: Engine;
let untrust: () => void = () => {};
let policyServer: https.Server;
let cachedPolicyServer: https.Server;
const sinks: Record<'good' | 'rogue' | 'wrongName' | 'plain', ScriptedSmtp> = {} as never;
const fetched: string[] = [];

const policies: Record<string, string> = {
  'listed.sts.test': 'version: STSv1\nmode: enforce\nmx: mx.listed.sts.test\nmax_age: 86400\n',
  'fallback.sts.test': 'version: STSv1\nmode: enforce\nmx: *.fallback.sts.test\nmax_age: 86400\n',
  'unlisted.sts.test': 'version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n',
  'notls.sts.test': 'version: STSv1\nmode: enforce\nmx: mx.notls.sts.test\nmax_age: 86400\n',
  'wrongname.sts.test': 'version: STSv1\nmode: enforce\nmx: mx.wrongname.sts.test\nmax_age: 86400\n',
  'testing.sts.test': 'version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 86400\n',
  // Expires at once: the next send must fetch it again.
  'cached.sts.test': 'version: STSv1\nmode: enforce\nmx: mx2.cached.sts.test\nmax_age: 1\n',
};

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}

beforeAll(async () => {
  db = await createTestDatabase('mx-mta-sts');
  const ca = createTestCa();
  untrust = ca.trust();
  const serve = (request: { headers: { host?: string } }, response: { writeHead(status: number, headers: Record<string, string>): void; end(body: string): void }) => {
    const domain = (request.headers.host ?? '').replace(/^mta-sts\./, '').replace(/:\d+$/, '');
    fetched.push(domain);
    const policy = policies[domain];
    response.writeHead(policy ? 200 : 404, { 'content-type': 'text/plain' });
    response.end(policy ?? 'no policy here');
  };
  const policyCert = ca.issue(Object.keys(policies).map((domain) => `mta-sts.${domain}`));
  policyServer = https.createServer(policyCert, serve);
  const stsPort = await listen(policyServer, POLICY_HOST, 0);
  cachedPolicyServer = https.createServer(policyCert, serve);
  await listen(cachedPolicyServer, CACHED_POLICY_HOST, stsPort);

  const goodNames = ['mx.listed.sts.test', 'mx2.fallback.sts.test', 'mx.testing.sts.test', 'mx2.cached.sts.test'];
  sinks.good = await startScriptedSmtp({ host: GOOD, port: 0 }, { starttls: true, tls: ca.issue(goodNames) });
  const mxPort = sinks.good.port;
  sinks.rogue = await startScriptedSmtp({ host: ROGUE, port: mxPort }, { starttls: true, tls: ca.issue(['mx.unlisted.sts.test', 'mx1.cached.sts.test']) });
  sinks.wrongName = await startScriptedSmtp({ host: WRONG_NAME, port: mxPort }, { starttls: true, tls: ca.issue(['somebody-else.sts.test']) });
  sinks.plain = await startScriptedSmtp({ host: PLAIN, port: mxPort });

  const stsDomains = Object.keys(policies);
  dns = await startDnsmasq({
    mx: [
      ['listed.sts.test', 'mx.listed.sts.test', 10],
      ['fallback.sts.test', 'mx1.fallback.sts.test', 10],
      ['fallback.sts.test', 'mx2.fallback.sts.test', 20],
      ['unlisted.sts.test', 'mx.unlisted.sts.test', 10],
      ['notls.sts.test', 'mx.notls.sts.test', 10],
      ['wrongname.sts.test', 'mx.wrongname.sts.test', 10],
      ['testing.sts.test', 'mx.testing.sts.test', 10],
      ['cached.sts.test', 'mx1.cached.sts.test', 10],
      ['cached.sts.test', 'mx2.cached.sts.test', 20],
    ],
    hosts: [
      ...stsDomains.filter((domain) => domain !== 'cached.sts.test').map((domain): [string, string] => [`mta-sts.${domain}`, POLICY_HOST]),
      ['mta-sts.cached.sts.test', CACHED_POLICY_HOST],
      ['mx.listed.sts.test', GOOD],
      ['mx1.fallback.sts.test', WRONG_NAME],
      ['mx2.fallback.sts.test', GOOD],
      ['mx.unlisted.sts.test', ROGUE],
      ['mx.notls.sts.test', PLAIN],
      ['mx.wrongname.sts.test', WRONG_NAME],
      ['mx.testing.sts.test', PLAIN],
      ['mx1.cached.sts.test', ROGUE],
      ['mx2.cached.sts.test', GOOD],
    ],
    txt: stsDomains.map((domain): [string, string] => [`_mta-sts.${domain}`, 'v=STSv1; id=20261127T0900;']),
  });
  engine = await startTestEngine(db.dsn, {
    MAIL_SMTP_MODE: 'mx',
    MAIL_MX_PORT: String(mxPort),
    // The MX hosts are on loopback addresses: allowed, as in a private network.
    MAIL_MX_PRIVATE_ADDRESSES: 'allow',
    MAIL_MTA_STS_PORT: String(stsPort),
    MAIL_DNS_SERVERS: dns.server,
    MAIL_MTA_HOSTNAME: 'postern.sts.test',
    // Short: a refused delivery is dead-lettered after three attempts.
    MAIL_RETRY_LADDER: Array.from({ length: LADDER_STEPS }, () => '300ms').join(','),
    // Every delivery on a connection of its own, so each one shows which hosts the policy passed
    // over (a reused connection names only its host; reuse under a policy: site-shaping.test.ts).
    MAIL_SHAPING_MESSAGES_PER_CONNECTION: '1',
  });
}, 180_000);

afterAll(async () => {
  await engine?.stop();
  untrust();
  await dns?.close();
  await Promise.all(Object.values(sinks).map((sink) => sink.close()));
  for (const server of [policyServer, cachedPolicyServer]) {
    if (server?.listening) await new Promise((resolve) => server.close(resolve));
  }
  await db?.drop();
});

const metric = async (sample: string) => metricValue(await metricsText(engine), sample);

describe('MTA-STS enforce', () => {
  it('delivers to a listed MX host over STARTTLS with a verified certificate', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'alice@listed.sts.test' });
    await waitForStatus(db.pool, id, 'sent', 60_000);
    expect((await attemptsOf(db.pool, id))[0]?.smtp_text).toMatch(/\(mx\.listed\.sts\.test\[127\.0\.26\.3\]:\d+, TLSv1\.[23], certificate verified\)$/);
    expect(sinks.good.accepted.get('alice@listed.sts.test')).toBe(1);
    expect(fetched).toContain('listed.sts.test');
  });

  it('passes over a listed host whose certificate names another host, to the next one the wildcard lists', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'bob@fallback.sts.test' });
    await waitForStatus(db.pool, id, 'sent', 60_000);
    const text = (await attemptsOf(db.pool, id))[0]?.smtp_text;
    expect(text).toMatch(/\(mx2\.fallback\.sts\.test\[127\.0\.26\.3\]:\d+, TLSv1\.[23], certificate verified; skipped: mx1\.fallback\.sts\.test\[127\.0\.26\.5\]: TLS not verified, which the MTA-STS policy requires/);
    expect(sinks.wrongName.seen.get('bob@fallback.sts.test')).toBeUndefined();
  });

  it.each([
    ['carol@unlisted.sts.test', 'rogue', /mx\.unlisted\.sts\.test\[127\.0\.26\.4\]: not an MX host the MTA-STS policy lists/],
    // smtp-server answers a STARTTLS it does not offer with a 5xx: still only a deferral.
    ['dave@notls.sts.test', 'plain', /mx\.notls\.sts\.test\[127\.0\.26\.6\]: no STARTTLS, which the MTA-STS policy requires \(5\d\d /],
    ['erin@wrongname.sts.test', 'wrongName', /mx\.wrongname\.sts\.test\[127\.0\.26\.5\]: TLS not verified, which the MTA-STS policy requires \(.*(altname|Hostname\/IP does not match).*\)/i],
  ] as const)('refuses %s: deferred with the reason, dead-lettered once the ladder is spent, nothing handed over', async (recipient, sink, why) => {
    const id = await queueDelivery(db.pool, { recipient });
    const row = await waitForStatus(db.pool, id, 'dead_letter', 90_000);
    expect(row?.last_error).toMatch(/^retry ladder exhausted after 3 attempts; last: mta_sts: MTA-STS policy of [a-z.]+ \(enforce\): EPOLICY: no MX host satisfies it \(tried: /);
    expect(row?.last_error).toMatch(why);
    const attempts = await attemptsOf(db.pool, id);
    expect(attempts).toHaveLength(LADDER_STEPS + 1);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({ status: 'transport_failed', smtp_code: null });
      expect(attempt.smtp_text).toMatch(why);
    }
    expect(sinks[sink].seen.get(recipient)).toBeUndefined();
  });

  it('counts each refusal by reason', async () => {
    expect(await metric('mail_mta_sts_policy_failures_total{mode="enforce",reason="mx_not_listed"}')).toBeGreaterThanOrEqual(LADDER_STEPS + 1);
    expect(await metric('mail_mta_sts_policy_failures_total{mode="enforce",reason="tls_missing"}')).toBeGreaterThanOrEqual(LADDER_STEPS + 1);
    expect(await metric('mail_mta_sts_policy_failures_total{mode="enforce",reason="tls_invalid"}')).toBeGreaterThanOrEqual(LADDER_STEPS + 2);
    expect(await metric('mail_mta_sts_policy_lookups_total{outcome="fetched"}')).toBeGreaterThanOrEqual(5);
  });
});

describe('MTA-STS testing', () => {
  it('delivers to an unlisted host without TLS, and counts what enforce would have refused', async () => {
    const before = await metric('mail_mta_sts_policy_failures_total{mode="testing",reason="mx_not_listed"}');
    const id = await queueDelivery(db.pool, { recipient: 'frank@testing.sts.test' });
    await waitForStatus(db.pool, id, 'sent', 60_000);
    expect((await attemptsOf(db.pool, id))[0]?.smtp_text).toMatch(/\(mx\.testing\.sts\.test\[127\.0\.26\.6\]:\d+, no TLS\)$/);
    expect(sinks.plain.accepted.get('frank@testing.sts.test')).toBe(1);
    expect(await metric('mail_mta_sts_policy_failures_total{mode="testing",reason="mx_not_listed"}')).toBe(before + 1);
    expect(await metric('mail_mta_sts_policy_failures_total{mode="testing",reason="tls_missing"}')).toBe(1);
  });
});

describe('the policy cache', () => {
  it('is in PostgreSQL, and applied when the policy host is down', async () => {
    const first = await queueDelivery(db.pool, { recipient: 'grace@cached.sts.test' });
    await waitForStatus(db.pool, first, 'sent', 60_000);
    // The policy lists only mx2: mx1, preferred by the MX records, is passed over.
    expect((await attemptsOf(db.pool, first))[0]?.smtp_text).toMatch(/\(mx2\.cached\.sts\.test\[127\.0\.26\.3\]:\d+, TLSv1\.[23], certificate verified; skipped: mx1\.cached\.sts\.test\[127\.0\.26\.4\]: not an MX host/);
    const { rows } = await db.pool.query<{ mode: string; policy: string }>('SELECT mode, policy FROM mail.mta_sts_policies WHERE domain = $1', ['cached.sts.test']);
    expect(rows[0]?.mode).toBe('enforce');
    expect(JSON.parse(rows[0]?.policy ?? '{}')).toMatchObject({ id: '20261127T0900', mode: 'enforce', mx: ['mx2.cached.sts.test'], maxAge: 1 });

    await new Promise((resolve) => cachedPolicyServer.close(resolve));
    await waitFor(
      'the cached policy (max_age 1 s) to expire',
      async () => (await db.pool.query<{ expired: boolean }>('SELECT expires_at < now() AS expired FROM mail.mta_sts_policies WHERE domain = $1', ['cached.sts.test'])).rows[0],
      (row) => row?.expired === true,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const failedBefore = await metric('mail_mta_sts_policy_lookups_total{outcome="failed_cached"}');
    const second = await queueDelivery(db.pool, { recipient: 'heidi@cached.sts.test' });
    await waitForStatus(db.pool, second, 'sent', 60_000);
    // Without the cached policy mx1 would have taken it.
    expect((await attemptsOf(db.pool, second))[0]?.smtp_text).toMatch(/\(mx2\.cached\.sts\.test\[127\.0\.26\.3\]:\d+, TLSv1\.[23], certificate verified; skipped: mx1\.cached\.sts\.test\[127\.0\.26\.4\]: not an MX host/);
    expect(sinks.rogue.seen.get('heidi@cached.sts.test')).toBeUndefined();
    expect(await metric('mail_mta_sts_policy_lookups_total{outcome="failed_cached"}')).toBeGreaterThan(failedBefore);
    expect(await deliveryRow(db.pool, second)).toMatchObject({ status: 'sent', attempt_count: 1 });
  });
});
