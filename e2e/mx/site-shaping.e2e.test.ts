// Shaping per destination site (docs/core.md, "Shaping") with TWO engines in mx mode sharing one
// PostgreSQL, against a real DNS server (dnsmasq) and MX hosts in the test process: ten domains
// whose MX records all name one host — one site — and a site whose only host greets 421.
// Proves: the limit of 2 connections per site holds across both engines (the sink counts the
// connections open at once), and the slots of a crashed engine free themselves; connections are
// reused (far fewer connections than messages); every message is delivered exactly once, deferred
// ones included, with one attempt each (a deferral spends no ladder step); a site refusing sessions
// is backed off as a whole (a bounded number of connection attempts, its deliveries deferred to the
// backoff's end without connecting); and the store's slots, leases, rate bucket and backoff rows
// behave as the engines rely on, and retention forgets the state of sites idle for its age.
import type net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { purgeExpired } from '../../apps/core/src/keepalive/retention.ts';
import { readSiteBackoffs, SITE_BACKOFF_STALE_MS } from '../../apps/core/src/relay/site-backoff-gauges.ts';
import { siteKey } from '../../apps/core/src/relay/site-key.ts';
import { createSiteStore } from '../../apps/core/src/relay/site-store.ts';
import { metricsText, queueDelivery, startTestEngine } from '../core/helpers/engine.ts';
import { startGreetingRefuser } from '../core/helpers/smtp-servers.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

const SINK = '127.0.25.11';
const GREETS_421 = '127.0.25.12';
const DOMAINS = Array.from({ length: 10 }, (_, i) => `d${i}.shape.test`);
const MESSAGES = 40;
const LIMIT = 2;

let db: TestDatabase;
let dns: DnsServer;
let engines: Engine[] = [];
let refuser: Awaited<ReturnType<typeof startGreetingRefuser>>;
let sinkServer: SMTPServer;
const sink = { connections: 0, open: 0, maxOpen: 0, accepted: new Map<string, number>() };

beforeAll(async () => {
  db = await createTestDatabase('mx-shaping');
  sinkServer = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    logger: false,
    onConnect(_session, callback) {
      sink.connections += 1;
      sink.open += 1;
      sink.maxOpen = Math.max(sink.maxOpen, sink.open);
      callback();
    },
    onClose() {
      sink.open -= 1;
    },
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        // A little time per message, so that sends overlap and the limit is really tested.
        setTimeout(() => {
          for (const rcpt of session.envelope.rcptTo) sink.accepted.set(rcpt.address, (sink.accepted.get(rcpt.address) ?? 0) + 1);
          callback(null, 'Ok: queued');
        }, 30);
      });
    },
  });
  sinkServer.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    sinkServer.server.once('error', reject);
    sinkServer.listen(0, SINK, resolve);
  });
  const mxPort = (sinkServer.server.address() as net.AddressInfo).port;
  refuser = await startGreetingRefuser({ host: GREETS_421, port: mxPort }, '421 4.7.0 too many connections, try later');
  dns = await startDnsmasq({
    mx: [...DOMAINS.map((domain): [string, string, number] => [domain, 'mx.sink.shape.test', 10]), ['busy.shape.test', 'mx.busy.shape.test', 10]],
    hosts: [
      ['mx.sink.shape.test', SINK],
      ['mx.busy.shape.test', GREETS_421],
    ],
  });
  const env = {
    MAIL_SMTP_MODE: 'mx',
    MAIL_MX_PORT: String(mxPort),
    // The MX hosts are on loopback addresses: allowed, as in a private network.
    MAIL_MX_PRIVATE_ADDRESSES: 'allow',
    MAIL_DNS_SERVERS: dns.server,
    MAIL_MTA_HOSTNAME: 'postern.shape.test',
    MAIL_SHAPING_MAX_CONNECTIONS: String(LIMIT),
    MAIL_SHAPING_DEFER: '300ms',
    MAIL_SHAPING_IDLE_TIMEOUT: '2s',
    // Longer than the test: a backed-off site stays so throughout.
    MAIL_SHAPING_BACKOFF: '10m',
    // Short waits: were a deferral spending a step, the ladder would be spent within the test.
    MAIL_RETRY_LADDER: '300ms,300ms,300ms',
  };
  engines = [await startTestEngine(db.dsn, env), await startTestEngine(db.dsn, env)];
});

afterAll(async () => {
  await Promise.all(engines.map((engine) => engine.stop()));
  await dns?.close();
  await refuser?.close();
  await new Promise<void>((resolve) => (sinkServer ? sinkServer.close(() => resolve()) : resolve()));
  await db?.drop();
});

/** The sum of every sample of a metric over both engines, optionally of one label value. */
async function metricSum(name: string, label?: string): Promise<number> {
  let sum = 0;
  for (const engine of engines) {
    for (const line of (await metricsText(engine)).split('\n')) {
      if (line.startsWith(`${name}{`) && (!label || line.includes(label))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

describe('shaping per destination site, two engines', () => {
  it(`never opens more than ${LIMIT} connections to a site at once, reuses them, and delivers all ${MESSAGES} messages once each`, async () => {
    // An engine that crashed holding both slots of the site: its leases run out in a few seconds,
    // meanwhile every delivery is deferred, then sent.
    const site = siteKey(['mx.sink.shape.test']);
    const store = createSiteStore(db.pool);
    for (let slot = 0; slot < LIMIT; slot += 1) expect(await store.claimSlot(site, LIMIT, `crashed-engine/${slot}`, 3_000)).toEqual({ kind: 'slot', slot });
    const ids: string[] = [];
    for (let i = 0; i < MESSAGES; i += 1) ids.push(await queueDelivery(db.pool, { recipient: `r${i}@${DOMAINS[i % DOMAINS.length]}` }));
    const rows = await waitFor(
      `all ${MESSAGES} deliveries sent`,
      async () => (await db.pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM mail.deliveries WHERE id = ANY($1) GROUP BY status', [ids])).rows,
      (current) => current.length === 1 && current[0]?.status === 'sent',
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    expect(rows).toEqual([{ status: 'sent', n: MESSAGES }]);
    expect(sink.maxOpen).toBeLessThanOrEqual(LIMIT);
    expect(sink.connections).toBeLessThan(MESSAGES / 2);
    expect([...sink.accepted.values()].every((count) => count === 1)).toBe(true);
    expect(sink.accepted.size).toBe(MESSAGES);
    // One attempt each: the deferrals on the way were not attempts, and spent no step of the ladder.
    const attempts = await db.pool.query<{ n: number; sent: number }>("SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'sent')::int AS sent FROM mail.attempts WHERE delivery_id = ANY($1)", [ids]);
    expect(attempts.rows[0]).toEqual({ n: MESSAGES, sent: MESSAGES });
    const counts = await db.pool.query<{ max: number }>('SELECT max(attempt_count)::int AS max FROM mail.deliveries WHERE id = ANY($1)', [ids]);
    expect(counts.rows[0]?.max).toBe(1);
    expect(await metricSum('mail_site_attempts_total', `site="${site}",outcome="sent"`)).toBe(MESSAGES);
    expect(await metricSum('mail_site_connections_total', 'how="reused"')).toBeGreaterThan(0);
    expect(await metricSum('mail_site_connections_total', 'how="opened"')).toBe(sink.connections);
    expect(await metricSum('mail_site_deferrals_total', 'reason="slot"')).toBeGreaterThan(0);
    // Idle connections close by themselves and give their slots back.
    await waitFor('idle connections closed', async () => sink.open, (open) => open === 0, { timeoutMs: 30_000, intervalMs: 200 });
    await waitFor(
      'slots released',
      async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.site_slots WHERE expires_at > now()')).rows[0]?.n,
      (held) => held === 0,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  });

  it('backs off a site whose host greets 421: a bounded number of connection attempts, the rest deferred without connecting', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i += 1) ids.push(await queueDelivery(db.pool, { recipient: `b${i}@busy.shape.test` }));
    const rows = await waitFor(
      'every delivery to the busy site deferred by its backoff',
      async () => (await db.pool.query<{ last_error: string | null; status: string; attempt_count: number }>('SELECT last_error, status, attempt_count FROM mail.deliveries WHERE id = ANY($1)', [ids])).rows,
      (current) => current.length === 10 && current.every((row) => /backed off/.test(row.last_error ?? '')),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    for (const row of rows) expect(row.status).toBe('retrying');
    // At most one connection per slot was under way before the backoff was recorded.
    expect(refuser.connections()).toBeGreaterThanOrEqual(1);
    expect(refuser.connections()).toBeLessThanOrEqual(LIMIT);
    const attempts = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM mail.attempts WHERE delivery_id = ANY($1)', [ids]);
    expect(attempts.rows[0]?.n).toBe(refuser.connections());
    const backoff = await db.pool.query('SELECT failures, reason FROM mail.site_backoffs WHERE site = $1', [siteKey(['mx.busy.shape.test'])]);
    expect(backoff.rows).toMatchObject([{ failures: 1, reason: expect.stringMatching(/421/) }]);
    // Deferred to the end of the backoff, not retried against it meanwhile.
    const due = await db.pool.query<{ waiting: boolean }>(
      'SELECT bool_and(d.next_attempt_at >= b.until) AS waiting FROM mail.deliveries d, mail.site_backoffs b WHERE d.id = ANY($1) AND b.site = $2',
      [ids, siteKey(['mx.busy.shape.test'])],
    );
    expect(due.rows[0]?.waiting).toBe(true);
    expect(await metricSum('mail_site_deferrals_total', 'reason="backoff"')).toBeGreaterThanOrEqual(10);
    expect(await metricSum('mail_site_backoffs_total')).toBeGreaterThanOrEqual(1);
    // What is backed off now: the shared row, so both engines report it, the one that did not
    // record the backoff too; and 0 again on both once a session clears it (done here by hand, as
    // a probe that set up a session does: the deliveries wait for the 10-minute backoff).
    const gauges = async () => Promise.all(engines.map(async (engine) => gaugesOf(await metricsText(engine))));
    await waitFor('both engines to report the busy site backed off', gauges, (each) => each.every((g) => g.sites === 1 && g.longestMs > 0), { timeoutMs: 30_000, intervalMs: 200 });
    await createSiteStore(db.pool).clearBackoff(siteKey(['mx.busy.shape.test']));
    await waitFor('both engines to report no site backed off', gauges, (each) => each.every((g) => g.sites === 0 && g.longestMs === 0), { timeoutMs: 30_000, intervalMs: 200 });
  });
});

/** An engine's site backoff gauges (site-backoff-gauges.ts) in its /metrics text. */
function gaugesOf(text: string): { sites: number; longestMs: number } {
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { sites: value('mail_sites_backed_off'), longestMs: value('mail_sites_backed_off_longest_ms') };
}

describe('the site store on PostgreSQL', () => {
  it('gives out at most N slots, frees the slots of a holder that stopped renewing when their lease runs out, and renews only live holders', async () => {
    const store = createSiteStore(db.pool);
    expect(await store.claimSlot('store.test', 2, 'a', 60_000)).toEqual({ kind: 'slot', slot: 0 });
    expect(await store.claimSlot('store.test', 2, 'b', 500)).toEqual({ kind: 'slot', slot: 1 });
    expect(await store.claimSlot('store.test', 2, 'c', 60_000)).toEqual({ kind: 'full', probing: false });
    // b is a crashed engine: it renews nothing, and its slot is free once the lease ran out.
    await waitFor('b’s lease to run out', () => store.claimSlot('store.test', 2, 'c', 60_000), (claim) => claim.kind === 'slot', { timeoutMs: 10_000, intervalMs: 100 });
    expect(await store.renewSlots(['a', 'b', 'c'], 60_000)).toEqual(new Set(['a', 'c']));
    await store.releaseSlot('store.test', 0, 'b');
    expect(await store.claimSlot('store.test', 2, 'd', 60_000)).toEqual({ kind: 'full', probing: false });
    await store.releaseSlot('store.test', 0, 'a');
    expect(await store.claimSlot('store.test', 2, 'd', 60_000)).toEqual({ kind: 'slot', slot: 0 });
    // A higher limit adds slots.
    expect(await store.claimSlot('store.test', 3, 'e', 60_000)).toEqual({ kind: 'slot', slot: 2 });
  });

  it('refuses slots while a site is backed off, lengthens the backoff only for failures after it, probes it on one slot once it is over, and clears it', async () => {
    const store = createSiteStore(db.pool);
    expect(await store.backOff('backoff.test', 60_000, '421 busy')).toMatchObject({ failures: 1 });
    expect(await store.backOff('backoff.test', 60_000, 'same outage')).toMatchObject({ failures: 1 });
    expect(await store.claimSlot('backoff.test', 2, 'a', 60_000)).toMatchObject({ kind: 'backoff', retryInMs: expect.any(Number) });
    // The backoff over, not cleared: one probe connection (slot 0) across every engine, the rest full.
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() - interval '1 second' WHERE site = 'backoff.test'`);
    expect(await store.claimSlot('backoff.test', 2, 'a', 60_000)).toEqual({ kind: 'slot', slot: 0 });
    expect(await createSiteStore(db.pool).claimSlot('backoff.test', 2, 'b', 60_000)).toEqual({ kind: 'full', probing: true });
    // The probe set up a session: the whole limit again.
    await store.clearBackoff('backoff.test');
    expect(await store.claimSlot('backoff.test', 2, 'b', 60_000)).toEqual({ kind: 'slot', slot: 1 });
  });

  it('counts a site backed off from its first failure until a session clears it, its probes included, and not once nothing tried it for the stale age', async () => {
    const store = createSiteStore(db.pool);
    const read = () => readSiteBackoffs(db.pool, SITE_BACKOFF_STALE_MS);
    const before = await read();
    await store.backOff('gauge.test', 60_000, '421 busy');
    expect((await read()).sites).toBe(before.sites + 1);
    // The outage began two hours ago; a failure of a later probe lengthens it, not restarts it.
    await db.pool.query(`UPDATE mail.site_backoffs SET since = now() - interval '2 hours', until = now() - interval '1 second' WHERE site = 'gauge.test'`);
    expect(await store.backOff('gauge.test', 60_000, '421 still busy')).toMatchObject({ failures: 2 });
    const during = await read();
    expect(during.longestMs).toBeGreaterThanOrEqual(2 * 3600_000);
    // The backoff over, the probe under way (or about to be): still counted.
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() - interval '1 minute' WHERE site = 'gauge.test'`);
    expect(await read()).toEqual({ sites: before.sites + 1, longestMs: expect.any(Number) });
    // Nothing tried it since its backoff ended an hour ago (its deliveries ended): not counted.
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() - interval '1 hour' WHERE site = 'gauge.test'`);
    expect((await read()).sites).toBe(before.sites);
    // Backed off again by a failure: counted again; then a session set up clears it.
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() + interval '1 minute' WHERE site = 'gauge.test'`);
    expect((await read()).sites).toBe(before.sites + 1);
    await store.clearBackoff('gauge.test');
    const after = await read();
    expect(after.sites).toBe(before.sites);
    expect(after.longestMs).toBeLessThan(3600_000);
  });

  it('gives the probe slot of an engine that died mid-probe to another engine once its lease ran out, and backs the site off again when a probe fails', async () => {
    const store = createSiteStore(db.pool);
    await store.backOff('crashed-probe.test', 60_000, '421 busy');
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() - interval '1 second' WHERE site = 'crashed-probe.test'`);
    // Engine a takes the probe slot and dies: it renews nothing.
    expect(await store.claimSlot('crashed-probe.test', 3, 'a', 500)).toEqual({ kind: 'slot', slot: 0 });
    const other = createSiteStore(db.pool);
    expect(await other.claimSlot('crashed-probe.test', 3, 'b', 60_000)).toEqual({ kind: 'full', probing: true });
    // At most a lease later another engine probes: one slot still, not the whole limit.
    await waitFor('a’s probe lease to run out', () => other.claimSlot('crashed-probe.test', 3, 'b', 60_000), (claim) => claim.kind === 'slot', { timeoutMs: 10_000, intervalMs: 100 });
    expect(await other.claimSlot('crashed-probe.test', 3, 'c', 60_000)).toEqual({ kind: 'full', probing: true });
    // b's probe fails too: backed off again, doubled, and no slot while it lasts.
    expect(await other.backOff('crashed-probe.test', 60_000, '421 still busy')).toMatchObject({ failures: 2 });
    await other.releaseSlot('crashed-probe.test', 0, 'b');
    expect(await other.claimSlot('crashed-probe.test', 3, 'c', 60_000)).toMatchObject({ kind: 'backoff', retryInMs: expect.any(Number) });
  });

  it('forgets the shaping state of a site idle for the retention age, keeps a site in use, and makes purged slot rows again on the next claim', async () => {
    const DAY_MS = 24 * 60 * 60 * 1000;
    const store = createSiteStore(db.pool);
    // idle.test: both slots used and given up, a bucket and a backoff, all two days ago.
    for (const holder of ['a', 'b']) expect(await store.claimSlot('idle.test', 2, holder, 60_000)).toMatchObject({ kind: 'slot' });
    await store.releaseSlot('idle.test', 0, 'a');
    await store.releaseSlot('idle.test', 1, 'b');
    expect(await store.takeToken('idle.test', 1)).toBe(true);
    await store.backOff('idle.test', 1_000, '421 busy');
    await db.pool.query(`UPDATE mail.site_slots SET expires_at = now() - interval '2 days' WHERE site = 'idle.test'`);
    await db.pool.query(`UPDATE mail.site_buckets SET refilled_at = now() - interval '2 days' WHERE site = 'idle.test'`);
    await db.pool.query(`UPDATE mail.site_backoffs SET until = now() - interval '2 days' WHERE site = 'idle.test'`);
    // half.test: one slot idle as long, the other released just now (a release stamps its time).
    for (const holder of ['a', 'b']) expect(await store.claimSlot('half.test', 2, holder, 60_000)).toMatchObject({ kind: 'slot' });
    await db.pool.query(`UPDATE mail.site_slots SET holder = NULL, expires_at = now() - interval '2 days' WHERE site = 'half.test' AND slot = 0`);
    await store.releaseSlot('half.test', 1, 'b');
    // held.test: a connection open now.
    expect(await store.claimSlot('held.test', 1, 'a', 60_000)).toEqual({ kind: 'slot', slot: 0 });
    // orphan.test: what a purge leaves when a slot was claimed during it (slot 0 gone, slot 1 kept), idle since.
    await db.pool.query(`INSERT INTO mail.site_slots (site, slot, expires_at) VALUES ('orphan.test', 1, now() - interval '2 days')`);
    // new.test: slot rows made just now by a claim its backoff refused, never used: free since now, not idle.
    await store.backOff('new.test', 60_000, '421 busy');
    expect(await store.claimSlot('new.test', 2, 'a', 60_000)).toMatchObject({ kind: 'backoff' });

    const purged = await purgeExpired(db.pool, { retentionAgeMs: DAY_MS, idempotencyWindowMs: DAY_MS });
    expect(purged).toMatchObject({ siteSlots: 2, siteBuckets: 1, siteBackoffs: 1 });
    const sites = ['idle.test', 'half.test', 'held.test', 'orphan.test', 'new.test'];
    const left = async (sql: string) => (await db.pool.query<{ site: string }>(sql, [sites])).rows.map((row) => row.site);
    expect(await left('SELECT DISTINCT site FROM mail.site_slots WHERE site = ANY($1::text[]) ORDER BY site')).toEqual(['half.test', 'held.test', 'new.test']);
    expect(await left('SELECT site FROM mail.site_buckets WHERE site = ANY($1::text[])')).toEqual([]);
    expect(await left('SELECT site FROM mail.site_backoffs WHERE site = ANY($1::text[])')).toEqual(['new.test']);
    expect((await purgeExpired(db.pool, { retentionAgeMs: DAY_MS, idempotencyWindowMs: DAY_MS })).siteSlots).toBe(0);

    // This store made idle.test's rows before the purge; its next claim finds them gone and makes them again.
    expect(await store.claimSlot('idle.test', 2, 'c', 60_000)).toEqual({ kind: 'slot', slot: 0 });
    expect(await store.claimSlot('idle.test', 2, 'd', 60_000)).toEqual({ kind: 'slot', slot: 1 });
    expect(await store.claimSlot('idle.test', 2, 'e', 60_000)).toEqual({ kind: 'full', probing: false });
  });

  it('takes tokens from a bucket that holds a second’s worth (at least one) and refills with time', async () => {
    const store = createSiteStore(db.pool);
    // One message every two seconds: one token, then none until it refilled.
    expect(await store.takeToken('rate.test', 0.5)).toBe(true);
    expect(await store.takeToken('rate.test', 0.5)).toBe(false);
    await waitFor('a token refilled', () => store.takeToken('rate.test', 0.5), (taken) => taken, { timeoutMs: 15_000, intervalMs: 200 });
    expect(await store.takeToken('rate.test', 0.5)).toBe(false);
  });
});
