// Shaping per destination site through the real direct-to-MX relay, against SMTP servers on
// loopback addresses that count their connections, and an in-memory store with the PostgreSQL
// store's semantics (e2e/mx runs the same with two engines on PostgreSQL): connections reused with
// RSET, closed after N messages, after an error or idle; the connection limit; a site whose every
// host refuses backed off as a whole; deferrals that never connect.
import net from 'node:net';
import { createLogger, createMailResolver, createMetricsRegistry, type DnsQuery, type MailRecordType } from '@postern/shared';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { lineSmtpServer } from './line-smtp.testkit.ts';
import type { MtaSts, StsPolicy } from './mta-sts.ts';
import { createMxRelay } from './mx-relay.ts';
import type { OutboundMessage, Relay } from './relay.ts';
import { siteKey } from './site-key.ts';
import { createSiteMetrics } from './site-metrics.ts';
import { parseSiteRules, type SiteLimits } from './site-rules.ts';
import { createSiteShaping, type SiteShaping, type SiteShapingOptions } from './site-shaping.ts';
import { createMemorySiteStore, type MemorySiteStore } from './site-store.testkit.ts';

const SINK = '127.0.0.21';
const GREETS_421 = '127.0.0.22';

const zone: Record<string, Partial<Record<MailRecordType, unknown[] | string>>> = {
  'a.test': { MX: [{ exchange: 'mx.shared.test', priority: 10 }] },
  'b.test': { MX: [{ exchange: 'MX.Shared.test.', priority: 10 }] },
  'mx.shared.test': { A: [SINK] },
  'busy.test': { MX: [{ exchange: 'mx.busy.test', priority: 10 }] },
  'mx.busy.test': { A: [GREETS_421] },
  'down.test': { MX: 'ETIMEOUT' },
};
const query: DnsQuery = async (name, type) => {
  const records = zone[name]?.[type] ?? 'ENOTFOUND';
  if (typeof records === 'string') throw Object.assign(new Error(`query${type} ${records} ${name}`), { code: records });
  return { records: records as never, ttlSeconds: 0 };
};

const SITE = siteKey(['mx.shared.test']);
const BUSY_SITE = siteKey(['mx.busy.test']);

/** What the sink saw. */
const sink = { connections: 0, open: 0, maxOpen: 0, rsets: 0, mailFroms: 0, messages: 0 };
/** The sink answers this once more and then closes the connection (a server's idle timeout, a
 *  restart): 'dot' is its 250 to the end of data; 'RSET unanswered' closes on RSET without a word. */
let closeAfter: 'dot' | 'RSET' | 'RSET unanswered' | 'MAIL' | null = null;
const sockets = new Set<net.Socket>();
let refusals = 0;
let port = 0;
const servers: net.Server[] = [];

function listen(server: net.Server, host: string, at: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}

beforeAll(async () => {
  const server = lineSmtpServer({
    greeting: '220 mx.shared.test ESMTP',
    ehlo: ['mx.shared.test', 'PIPELINING'],
    onCommand(line, socket) {
      const verb = line.split(' ')[0]?.toUpperCase();
      if (verb === 'RSET') sink.rsets += 1;
      if (verb === 'MAIL') sink.mailFroms += 1;
      if (verb === closeAfter || `${verb} unanswered` === closeAfter) {
        if (verb === closeAfter) socket.end('250 2.0.0 ok\r\n');
        else socket.end();
        closeAfter = null;
        return true;
      }
      if (verb === 'RCPT' && line.toLowerCase().includes('reject')) {
        socket.write('550 5.1.1 no such user\r\n');
        return true;
      }
      return false;
    },
    onMessage(socket) {
      sink.messages += 1;
      if (closeAfter === 'dot') {
        closeAfter = null;
        // Right after the reply, which the server writes once this returns.
        queueMicrotask(() => socket.end());
      }
      return '250 2.0.0 queued';
    },
  });
  server.on('connection', (socket) => {
    sink.connections += 1;
    sink.open += 1;
    sink.maxOpen = Math.max(sink.maxOpen, sink.open);
    sockets.add(socket);
    socket.on('close', () => {
      sink.open -= 1;
      sockets.delete(socket);
    });
  });
  port = await listen(server, SINK, 0);
  servers.push(server);
  const busy = net.createServer((socket) => {
    refusals += 1;
    socket.on('error', () => {});
    socket.end('421 4.7.0 too many connections from you\r\n');
  });
  await listen(busy, GREETS_421, port);
  servers.push(busy);
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

let open: { relay: Relay; shaping: SiteShaping } | null = null;

afterEach(async () => {
  await open?.relay.close();
  open = null;
  await vi.waitFor(() => expect(sink.open).toBe(0), { timeout: 5_000 });
  Object.assign(sink, { connections: 0, maxOpen: 0, rsets: 0, mailFroms: 0, messages: 0 });
  closeAfter = null;
  refusals = 0;
});

const DEFAULTS: SiteLimits = { maxConnections: 10, messagesPerConnection: 100, ratePerSecond: null };

function shapedRelay(store: MemorySiteStore, overrides: Partial<SiteShapingOptions> = {}, mtaSts?: MtaSts) {
  const resolver = createMailResolver({ servers: null, timeoutMs: 1_000, query });
  const logger = createLogger('site-shaping-test', 'silent');
  const shaping = createSiteShaping({
    store,
    resolver,
    rules: [],
    defaults: DEFAULTS,
    idleTimeoutMs: 60_000,
    deferMs: 50,
    backoffMs: 60_000,
    timeoutMs: 2_000,
    engineId: 'engine-1',
    metrics: createSiteMetrics(createMetricsRegistry('test')),
    logger,
    ...overrides,
  });
  const relay = createMxRelay({ resolver, port, privateAddresses: 'allow', localName: 'postern.test', timeoutMs: 2_000, sendDeadlineMs: 20_000, logger, shaping, ...(mtaSts ? { mtaSts } : {}) });
  open = { relay, shaping };
  return { relay, shaping };
}

function message(recipient: string): OutboundMessage {
  return { deliveryId: recipient, envelopeFrom: 'sender@postern.test', recipient, raw: Buffer.from(`Subject: to ${recipient}\r\n\r\nhello\r\n`) };
}

describe('connection reuse', () => {
  it('sends one message after another over one connection, with RSET before each reuse, across the domains of one site', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store);
    for (const recipient of ['1@a.test', '2@b.test', '3@a.test', '4@b.test', '5@a.test']) {
      expect(await relay.send(message(recipient))).toMatchObject({ ok: true, reply: { code: 250 } });
    }
    expect(sink.messages).toBe(5);
    expect(sink.connections).toBe(1);
    expect(sink.rsets).toBe(4);
    expect(shaping.held(SITE)).toEqual({ idle: 1, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(1);
  });

  it('closes a connection after the site’s messages per connection, from the sites file', async () => {
    const store = createMemorySiteStore();
    const { relay } = shapedRelay(store, { rules: parseSiteRules('*.shared.test  messages=2\n') });
    for (let i = 0; i < 5; i += 1) expect(await relay.send(message(`${i}@a.test`))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(3);
    expect(sink.messages).toBe(5);
  });

  it('never reuses a connection after a failed transaction: it is closed and its slot given back', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store);
    expect(await relay.send(message('reject@a.test'))).toMatchObject({ ok: false, failure: { kind: 'reply', reply: { code: 550 } } });
    expect(shaping.held(SITE)).toEqual({ idle: 0, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(0);
    expect(await relay.send(message('ok@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
    expect(sink.rsets).toBe(0);
  });

  it('closes an idle connection after the idle timeout and gives its slot back, and forgets the site', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store, { idleTimeoutMs: 50 });
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    // Kept while its connection waits for the next message.
    expect(shaping.trackedSites).toBe(1);
    await vi.waitFor(() => expect(sink.open).toBe(0), { timeout: 5_000 });
    expect(shaping.held(SITE)).toEqual({ idle: 0, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(0);
    // Nothing of this engine's is left at the site: an engine mailing many sites does not grow.
    await vi.waitFor(() => expect(shaping.trackedSites).toBe(0), { timeout: 5_000 });
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
  });

  it('opens a new connection when the server closed the idle one', async () => {
    const store = createMemorySiteStore();
    const { relay } = shapedRelay(store);
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    for (const socket of sockets) socket.destroy();
    await vi.waitFor(() => expect(store.heldSlots(SITE)).toBe(0), { timeout: 5_000 });
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
    expect(sink.messages).toBe(2);
  });
});

/** As on PostgreSQL, where a release and the next claim go over different connections: a slot
 *  given back is free only a moment after its release was sent. */
function slowReleaseStore(): MemorySiteStore {
  const store = createMemorySiteStore();
  const release = store.releaseSlot;
  store.releaseSlot = async (...args) => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return release(...args);
  };
  return store;
}

describe('a reused connection the server closed before it answered the transaction', () => {
  it('answered RSET and then closed: the message goes at once on a fresh connection, on the same slot', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 } });
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    closeAfter = 'RSET';
    // MAIL FROM meets a closed connection: nothing of the transaction reached the server.
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true, reply: { code: 250 } });
    expect(sink.connections).toBe(2);
    expect(sink.messages).toBe(2);
    expect(sink.maxOpen).toBe(1);
    // The dead connection's slot carried the new one: one slot, now idle with its connection.
    expect(shaping.held(SITE)).toEqual({ idle: 1, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(1);
    // And the fresh connection is reused as any other.
    expect(await relay.send(message('3@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
  });

  it('left RSET unanswered and closed: the next message goes on a fresh connection, at a limit of one too', async () => {
    const store = slowReleaseStore();
    const { relay, shaping } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 } });
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    closeAfter = 'RSET unanswered';
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true, reply: { code: 250 } });
    expect(sink.connections).toBe(2);
    expect(sink.maxOpen).toBe(1);
    expect(shaping.held(SITE)).toEqual({ idle: 1, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(1);
  });

  it('closed right after its 250 to the data: the next message, sent at once, goes on a fresh connection, at a limit of one too', async () => {
    const store = slowReleaseStore();
    const { relay, shaping } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 } });
    closeAfter = 'dot';
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
    expect(sink.messages).toBe(2);
    expect(shaping.held(SITE)).toEqual({ idle: 1, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(1);
  });

  it('closed after an idle pause: the next message goes on a fresh connection, at a limit of one too', async () => {
    const store = slowReleaseStore();
    const { relay, shaping } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 } });
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    for (const socket of sockets) socket.end('421 4.4.2 idle too long\r\n');
    await vi.waitFor(() => expect(sink.open).toBe(0), { timeout: 5_000 });
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: true });
    expect(sink.connections).toBe(2);
    expect(shaping.held(SITE)).toEqual({ idle: 1, busy: 0 });
    expect(store.heldSlots(SITE)).toBe(1);
  });

  it('is not sent again when the server answered MAIL FROM and then closed: it had heard the transaction', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store);
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    closeAfter = 'MAIL';
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: false, failure: { kind: 'connection', dataSent: false } });
    expect(sink.connections).toBe(1);
    expect(sink.mailFroms).toBe(2);
    // Closed, its slot given back.
    await vi.waitFor(() => expect(store.heldSlots(SITE)).toBe(0), { timeout: 5_000 });
    expect(shaping.held(SITE)).toEqual({ idle: 0, busy: 0 });
  });
});

describe('connection reuse under MTA-STS', () => {
  it('does not carry an enforce-policy domain’s mail over a connection the policy would not allow, nor back the site off for it', async () => {
    const store = createMemorySiteStore();
    // b.test shares a.test's MX host but its policy lists another host: its mail must not reach the
    // sink, not even over the idle connection a.test's mail left behind.
    const policies: Record<string, StsPolicy> = { 'b.test': { domain: 'b.test', id: '1', mode: 'enforce', mx: ['mx.elsewhere.test'] } };
    const failures: string[] = [];
    const mtaSts: MtaSts = {
      policyFor: async (domain) => policies[domain] ?? null,
      failed: (_policy, reason) => failures.push(reason),
    };
    const { relay } = shapedRelay(store, {}, mtaSts);
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    expect(await relay.send(message('2@b.test'))).toMatchObject({ ok: false, failure: { category: 'mta_sts' } });
    expect(failures).toContain('mx_not_listed');
    expect(sink.messages).toBe(1);
    expect(await relay.send(message('3@a.test'))).toMatchObject({ ok: true });
    expect(sink.messages).toBe(2);
  });
});

describe('limits', () => {
  it('keeps the connection limit: a send that finds no slot waits for this engine’s busy connection, and is handed it', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 }, deferMs: 5_000 });
    const results = await Promise.all(['1@a.test', '2@a.test', '3@b.test'].map((recipient) => relay.send(message(recipient))));
    expect(results).toMatchObject([{ ok: true }, { ok: true }, { ok: true }]);
    expect(sink.connections).toBe(1);
    expect(sink.maxOpen).toBe(1);
    // The waiting sends were handed the one connection: one state for the site throughout.
    expect(shaping.trackedSites).toBe(1);
  });

  it('defers without connecting when the site has no free slot (another engine holds it), not as a failed attempt', async () => {
    const store = createMemorySiteStore();
    await store.claimSlot(SITE, 1, 'engine-2/x', 60_000);
    const { relay } = shapedRelay(store, { defaults: { ...DEFAULTS, maxConnections: 1 }, deferMs: 40 });
    const result = await relay.send(message('1@a.test'));
    expect(result).toMatchObject({ ok: false, failure: { kind: 'deferred', retryInMs: expect.any(Number), message: expect.stringMatching(/no free connection/) } });
    if (result.ok) throw new Error('sent');
    expect(result.failure.retryInMs).toBeGreaterThanOrEqual(30);
    expect(result.failure.retryInMs).toBeLessThanOrEqual(50);
    expect(sink.connections).toBe(0);
  });

  it('defers when the site has no rate token left', async () => {
    const store = createMemorySiteStore();
    store.tokens.set(SITE, 1);
    const { relay } = shapedRelay(store, { defaults: { ...DEFAULTS, ratePerSecond: 1 } });
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: true });
    expect(await relay.send(message('2@a.test'))).toMatchObject({ ok: false, failure: { kind: 'deferred', message: expect.stringMatching(/rate limit/) } });
    expect(sink.messages).toBe(1);
  });

  it('backs a site off as a whole when its every host refuses the session, and then defers its mail without connecting', async () => {
    const store = createMemorySiteStore();
    const { relay, shaping } = shapedRelay(store);
    expect(await relay.send(message('1@busy.test'))).toMatchObject({ ok: false, failure: { kind: 'reply', reply: { code: 421 } } });
    expect(store.backoffs.get(BUSY_SITE)).toMatchObject({ failures: 1, reason: expect.stringMatching(/421/) });
    for (let i = 2; i <= 5; i += 1) {
      expect(await relay.send(message(`${i}@busy.test`))).toMatchObject({ ok: false, failure: { kind: 'deferred', message: expect.stringMatching(/backed off/) } });
    }
    expect(refusals).toBe(1);
    expect(store.heldSlots(BUSY_SITE)).toBe(0);
    expect(shaping.held(BUSY_SITE)).toEqual({ idle: 0, busy: 0 });
    // Deferred sends leave nothing behind in this engine; the backoff lives in the shared store.
    expect(shaping.trackedSites).toBe(0);
  });

  it('probes a site whose backoff is over with one connection; the others are deferred until it sets up a session', async () => {
    const store = createMemorySiteStore();
    // A backoff that ran out a moment ago and was not cleared: no session was set up since.
    store.backoffs.set(SITE, { until: Date.now() - 1, failures: 3, reason: 'connect ETIMEDOUT' });
    const { relay } = shapedRelay(store);
    const [probe, other] = await Promise.all([relay.send(message('1@a.test')), relay.send(message('2@a.test'))]);
    expect(probe).toMatchObject({ ok: true });
    expect(other).toMatchObject({ ok: false, failure: { kind: 'deferred', message: expect.stringMatching(/being probed/), retryInMs: expect.any(Number) } });
    expect(sink.connections).toBe(1);
    // The probe set up a session: the backoff is cleared and the site has its whole limit again.
    expect(store.backoffs.has(SITE)).toBe(false);
    const results = await Promise.all([3, 4, 5].map((i) => relay.send(message(`${i}@a.test`))));
    expect(results.every((result) => result.ok)).toBe(true);
  });

  it('defers, rather than spend an attempt, when the shared state cannot be reached', async () => {
    const store = createMemorySiteStore();
    store.claimSlot = async () => {
      throw Object.assign(new Error('connection terminated unexpectedly'), { code: '57P01' });
    };
    const { relay } = shapedRelay(store);
    expect(await relay.send(message('1@a.test'))).toMatchObject({ ok: false, failure: { kind: 'deferred', message: expect.stringMatching(/shared shaping state/) } });
    expect(sink.connections).toBe(0);
  });

  it('reports a failed MX lookup as a DNS failure without claiming anything', async () => {
    const store = createMemorySiteStore();
    const { relay } = shapedRelay(store);
    expect(await relay.send(message('1@down.test'))).toMatchObject({ ok: false, failure: { kind: 'dns', message: expect.stringMatching(/^ETIMEOUT: /) } });
  });
});
