// Direct delivery (MAIL_SMTP_MODE=mx) against a real DNS server — dnsmasq in a container, serving
// MX, A, AAAA and TXT records for test domains — and MX hosts in the test process: each on its own
// loopback address (127.0.25.x, ::1) and all on one port (MAIL_MX_PORT), as MX hosts on the internet
// all listen on 25. One host refuses connections (nothing listens on its address), one greets with
// 421, one accepts, and a backup that also accepts must never be reached. The engine runs here too,
// asking the DNS server through MAIL_DNS_SERVERS.
// Proves: MX priority order with fallback past a refused connection and a 4xx greeting; the
// implicit MX; IPv6; opportunistic STARTTLS recorded in the attempt; a null MX and an NXDOMAIN recipient domain fail for good with their reason;
// a DNS server that stops answering defers (retrying, never failed) and the mail goes out once when
// it answers again; the mail resolver's own reads and cache against the real server; and an engine
// left at MAIL_MX_PRIVATE_ADDRESSES' default never connects to these loopback MX hosts.
import { createMailResolver } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { attemptsOf, deliveryRow, queueDelivery, startTestEngine, waitForStatus } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startGreetingRefuser, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

/** Nothing listens here: connections are refused. */
const REFUSING = '127.0.25.1';
const GREETS_421 = '127.0.25.2';
const ACCEPTING = '127.0.25.3';
/** Accepts too, at the lowest priority: reaching it would mean the order was not kept. */
const BACKUP = '127.0.25.4';

let db: TestDatabase;
let dns: DnsServer;
let engine: Engine;
let accepting: ScriptedSmtp;
let backup: ScriptedSmtp;
let overIpv6: ScriptedSmtp;
let refuser: Awaited<ReturnType<typeof startGreetingRefuser>>;
let mxPort: number;

beforeAll(async () => {
  db = await createTestDatabase('mx-direct');
  accepting = await startScriptedSmtp({ host: ACCEPTING, port: 0 });
  mxPort = accepting.port;
  backup = await startScriptedSmtp({ host: BACKUP, port: mxPort });
  // Offers STARTTLS with a certificate nobody can verify: used all the same, and recorded.
  overIpv6 = await startScriptedSmtp({ host: '::1', port: mxPort }, { starttls: true });
  refuser = await startGreetingRefuser({ host: GREETS_421, port: mxPort }, '421 4.3.2 mx2 is busy, try another host');
  dns = await startDnsmasq({
    mx: [
      ['order.mx.test', 'mx3.order.mx.test', 30],
      ['order.mx.test', 'mx1.order.mx.test', 10],
      ['order.mx.test', 'mx4.order.mx.test', 40],
      ['order.mx.test', 'mx2.order.mx.test', 20],
      ['v6.mx.test', 'mx.v6.mx.test', 10],
      ['nullmx.mx.test', '.', 0],
      ['later.mx.test', 'mx.later.mx.test', 10],
    ],
    hosts: [
      ['mx1.order.mx.test', REFUSING],
      ['mx2.order.mx.test', GREETS_421],
      ['mx3.order.mx.test', ACCEPTING],
      ['mx4.order.mx.test', BACKUP],
      ['implicit.mx.test', ACCEPTING],
      ['mx.v6.mx.test', '::1'],
      ['mx.later.mx.test', ACCEPTING],
    ],
    txt: [['order.mx.test', 'v=spf1 ip4:127.0.25.0/24 -all']],
  });
  engine = await startTestEngine(db.dsn, {
    MAIL_SMTP_MODE: 'mx',
    MAIL_MX_PORT: String(mxPort),
    // The MX hosts are on loopback addresses: allowed, as in a private network.
    MAIL_MX_PRIVATE_ADDRESSES: 'allow',
    MAIL_DNS_SERVERS: dns.server,
    MAIL_MTA_HOSTNAME: 'postern.mx.test',
    // Long enough that a DNS outage of a few attempts never spends it.
    MAIL_RETRY_LADDER: Array.from({ length: 30 }, () => '500ms').join(','),
  });
});

afterAll(async () => {
  await engine?.stop();
  await dns?.close();
  await Promise.all([accepting?.close(), backup?.close(), overIpv6?.close(), refuser?.close()]);
  await db?.drop();
});

describe('the mail resolver against a real DNS server', () => {
  it('reads MX, A, AAAA and TXT records, keeps the MX answer and asks again for what it did not keep', async () => {
    const resolver = createMailResolver({ servers: [dns.server], timeoutMs: 2_000 });
    expect(await resolver.resolve('order.mx.test', 'MX')).toEqual(
      expect.arrayContaining([
        { exchange: 'mx1.order.mx.test', priority: 10 },
        { exchange: 'mx4.order.mx.test', priority: 40 },
      ]),
    );
    expect(await resolver.resolve('mx3.order.mx.test', 'A')).toEqual([ACCEPTING]);
    expect(await resolver.resolve('mx.v6.mx.test', 'AAAA')).toEqual(['::1']);
    expect(await resolver.resolve('order.mx.test', 'TXT')).toEqual([['v=spf1 ip4:127.0.25.0/24 -all']]);
    await expect(resolver.resolve('nowhere.mx.test', 'MX')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(resolver.resolve('implicit.mx.test', 'MX')).rejects.toMatchObject({ code: 'ENODATA' });

    await dns.pause();
    try {
      // MX answers are kept (Node exposes no TTL for them: a fixed time); dnsmasq gives its own
      // records a TTL of 0, so the A record is asked for again, and goes unanswered.
      expect(await resolver.resolve('order.mx.test', 'MX')).toHaveLength(4);
      await expect(resolver.resolve('mx3.order.mx.test', 'A')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    } finally {
      await dns.resume();
    }
  });
});

describe('direct delivery (MAIL_SMTP_MODE=mx)', () => {
  it('tries the MX hosts in priority order: past a refused connection and a 421 greeting, delivered once at the first that accepts', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'alice@order.mx.test' });
    await waitForStatus(db.pool, id, 'sent');
    const attempts = await attemptsOf(db.pool, id);
    expect(attempts).toMatchObject([{ attempt_number: 1, status: 'sent', smtp_code: 250 }]);
    expect(attempts[0]?.smtp_text).toMatch(
      /^250 .*\(mx3\.order\.mx\.test\[127\.0\.25\.3\]:\d+, no TLS; skipped: mx1\.order\.mx\.test\[127\.0\.25\.1\]: [^;]*refused[^;]*; mx2\.order\.mx\.test\[127\.0\.25\.2\]: 421 4\.3\.2 mx2 is busy/i,
    );
    expect(accepting.accepted.get('alice@order.mx.test')).toBe(1);
    expect(refuser.connections()).toBe(1);
    expect(backup.seen.size).toBe(0);
  });

  it('delivers to the domain itself when it has no MX record (implicit MX)', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'bob@implicit.mx.test' });
    await waitForStatus(db.pool, id, 'sent');
    expect((await attemptsOf(db.pool, id))[0]?.smtp_text).toContain('(implicit.mx.test[127.0.25.3]:');
    expect(accepting.accepted.get('bob@implicit.mx.test')).toBe(1);
  });

  it('delivers over IPv6 to an MX host that has only an AAAA record, with STARTTLS though its certificate does not verify', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'carol@v6.mx.test' });
    await waitForStatus(db.pool, id, 'sent');
    expect((await attemptsOf(db.pool, id))[0]?.smtp_text).toMatch(/\(mx\.v6\.mx\.test\[::1\]:\d+, TLSv1\.[23], certificate not verified \(\S.*\)\)$/);
    expect(overIpv6.accepted.get('carol@v6.mx.test')).toBe(1);
  });

  it('fails for good, after one attempt, on a null MX, saying so', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'dave@nullmx.mx.test' });
    const row = await waitForStatus(db.pool, id, 'failed');
    expect(row?.last_error).toMatch(/^null_mx: ENULLMX: .*nullmx\.mx\.test.*does not accept email.*null MX/);
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'provider_rejected', smtp_code: null }]);
  });

  it('fails for good, after one attempt, when the recipient domain does not exist (NXDOMAIN)', async () => {
    const id = await queueDelivery(db.pool, { recipient: 'erin@nowhere.mx.test' });
    const row = await waitForStatus(db.pool, id, 'failed');
    expect(row?.last_error).toBe('no_such_domain: NXDOMAIN: the recipient domain nowhere.mx.test does not exist');
    expect(await attemptsOf(db.pool, id)).toMatchObject([{ attempt_number: 1, status: 'provider_rejected' }]);
  });

  it('defers while the DNS server does not answer — retrying, never failed — and delivers once when it answers again', async () => {
    await dns.pause();
    let id = '';
    try {
      id = await queueDelivery(db.pool, { recipient: 'frank@later.mx.test' });
      const row = await waitFor(
        'three attempts deferred by the DNS timeout',
        () => deliveryRow(db.pool, id),
        (current) => (current?.attempt_count ?? 0) >= 3 && current?.status === 'retrying',
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      expect(row?.last_error).toMatch(/^dns: ETIMEOUT: /);
      const attempts = await attemptsOf(db.pool, id);
      expect(attempts.length).toBeGreaterThanOrEqual(3);
      for (const attempt of attempts) expect(attempt).toMatchObject({ status: 'transport_failed', smtp_code: null });
    } finally {
      await dns.resume();
    }
    await waitForStatus(db.pool, id, 'sent', 30_000);
    expect(accepting.accepted.get('frank@later.mx.test')).toBe(1);
    const attempts = await attemptsOf(db.pool, id);
    expect(attempts.map((attempt) => attempt.status)).not.toContain('provider_rejected');
    expect(attempts.at(-1)).toMatchObject({ status: 'sent' });
  });
});

describe('an engine left at the default MAIL_MX_PRIVATE_ADDRESSES=refuse', () => {
  it('never connects to an MX host at a loopback address: the attempt is deferred, saying why, and nothing reaches the hosts', async () => {
    const guardedDb = await createTestDatabase('mx-private');
    const guarded = await startTestEngine(guardedDb.dsn, {
      MAIL_SMTP_MODE: 'mx',
      MAIL_MX_PORT: String(mxPort),
      MAIL_DNS_SERVERS: dns.server,
      MAIL_MTA_HOSTNAME: 'postern.mx.test',
      MAIL_RETRY_LADDER: '1h',
    });
    try {
      const refusedBefore = refuser.connections();
      const id = await queueDelivery(guardedDb.pool, { recipient: 'mallory@order.mx.test' });
      const row = await waitFor(
        'the first attempt deferred',
        () => deliveryRow(guardedDb.pool, id),
        (current) => current?.status === 'retrying' && (current?.attempt_count ?? 0) >= 1,
        { timeoutMs: 20_000, intervalMs: 50 },
      );
      expect(row?.last_error).toMatch(/^dns: InvalidIpAddress: .*\[127\.0\.25\.\d\].*prohibited "loopback" address range/);
      expect(await attemptsOf(guardedDb.pool, id)).toMatchObject([{ attempt_number: 1, status: 'transport_failed', smtp_code: null }]);
      expect(accepting.seen.has('mallory@order.mx.test')).toBe(false);
      expect(backup.seen.size).toBe(0);
      expect(refuser.connections()).toBe(refusedBefore);
    } finally {
      await guarded.stop();
      await guardedDb.drop();
    }
  });
});
