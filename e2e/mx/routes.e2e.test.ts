// Per-domain routes against a real DNS server (dnsmasq) and SMTP servers in the test process, each
// on its own loopback address (127.0.26.x): one MX host every test domain's MX record names, two
// relay hosts routes point at, one that greets with 554, and an address where nothing listens.
// Routes are set through the same code the API calls (setRoute/deleteRoute); the engines read the
// table on every send here (routeCacheMs 0: a test changes a route and sends at once; the cache of
// at most two seconds is route-table.test.ts's).
// Proves, in mx mode: a routed domain goes to its relay while the others go direct to their MX
// host, exact beats parent beats default, the route is recorded on the attempt; a changed or
// deleted route takes effect for the next delivery; a route to a host that refuses the connection,
// greets with 554, or cannot give the required TLS defers (retrying, never failed, nothing sent in
// the clear) and the mail goes out once the route is fixed; a route with credentials authenticates
// to its relay over verified TLS, and wrong credentials defer the delivery. In smtp mode: an "mx"
// route sends one domain direct while everything else goes to MAIL_SMTP_ADDR. In stub mode: routes
// are ignored.
import { randomBytes } from 'node:crypto';
import { createLogger, deleteRoute, secretsKeyOf, setRoute } from '@postern/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../apps/core/src/engine.ts';
import { createTestCa } from '../../apps/core/src/relay/test-ca.testkit.ts';
import { deliveryRow, insertAcceptedMessage, queueDelivery, startTestEngine, waitForStatus } from '../core/helpers/engine.ts';
import { type ScriptedSmtp, startGreetingRefuser, startScriptedSmtp } from '../core/helpers/smtp-servers.ts';
import { type DnsServer, startDnsmasq } from '../harness/dnsmasq.ts';
import { createTestDatabase, type TestDatabase, waitFor } from '../harness/index.ts';

/** Nothing listens here: connections are refused. */
const REFUSING = '127.0.26.1';
const GREETS_554 = '127.0.26.2';
const MX_HOST = '127.0.26.3';
const RELAY_A = '127.0.26.4';
const RELAY_B = '127.0.26.5';
/** Wants AUTH, after STARTTLS with a certificate for its address from a CA the test trusts. */
const RELAY_AUTH = '127.0.26.6';
const secretsKey = randomBytes(32);

const DOMAINS = ['tickets.routes.test', 'other.routes.test', 'x.sub.routes.test', 'y.deep.sub.routes.test', 'sub.routes.test', 'change.routes.test', 'refused.routes.test', 'tls.routes.test', 'direct.routes.test', 'stub.routes.test', 'auth.routes.test'];

let db: TestDatabase;
let smtpDb: TestDatabase;
let dns: DnsServer;
let engine: Engine;
let mx: ScriptedSmtp;
let relayA: ScriptedSmtp;
let relayB: ScriptedSmtp;
let relayAuth: ScriptedSmtp;
let untrust: () => void;
let refuser: Awaited<ReturnType<typeof startGreetingRefuser>>;

interface AttemptRoute {
  attempt_number: number;
  status: string;
  smtp_text: string | null;
  route_domain: string | null;
  route_relay: string | null;
  route_tls: string | null;
}

async function routedAttempts(pool: TestDatabase['pool'], id: string): Promise<AttemptRoute[]> {
  const { rows } = await pool.query<AttemptRoute>(
    'SELECT attempt_number, status, smtp_text, route_domain, route_relay, route_tls FROM mail.attempts WHERE delivery_id = $1 ORDER BY attempt_number',
    [id],
  );
  return rows;
}

/** Every SMTP server's accepted count for one recipient: where it went, and that it went once. */
function whereAccepted(recipient: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const [name, server] of Object.entries({ mx, relayA, relayB })) {
    const n = server.accepted.get(recipient);
    if (n) counts[name] = n;
  }
  return counts;
}

beforeAll(async () => {
  db = await createTestDatabase('mx-routes');
  mx = await startScriptedSmtp({ host: MX_HOST, port: 0 });
  relayA = await startScriptedSmtp({ host: RELAY_A, port: 0 });
  // Offers STARTTLS with a certificate nobody can verify.
  relayB = await startScriptedSmtp({ host: RELAY_B, port: 0 }, { starttls: true });
  const ca = createTestCa();
  untrust = ca.trust();
  relayAuth = await startScriptedSmtp({ host: RELAY_AUTH, port: 0 }, { starttls: true, tls: ca.issue([RELAY_AUTH]), auth: { username: 'postern', password: 'right horse' } });
  refuser = await startGreetingRefuser({ host: GREETS_554, port: relayA.port }, '554 5.7.1 no service for you');
  dns = await startDnsmasq({
    mx: DOMAINS.map((domain): [string, string, number] => [domain, 'mx.routes.test', 10]),
    hosts: [['mx.routes.test', MX_HOST]],
  });
  engine = await startTestEngine(
    db.dsn,
    {
      MAIL_SMTP_MODE: 'mx',
      MAIL_MX_PORT: String(mx.port),
      // The MX hosts are on loopback addresses: allowed, as in a private network.
      MAIL_MX_PRIVATE_ADDRESSES: 'allow',
      MAIL_DNS_SERVERS: dns.server,
      MAIL_MTA_HOSTNAME: 'postern.routes.test',
      MAIL_SECRETS_KEY: secretsKey.toString('base64'),
      // Long enough that the deferral tests never spend it.
      MAIL_RETRY_LADDER: Array.from({ length: 40 }, () => '300ms').join(','),
      // A routed relay whose sessions fail twice is backed off (relay/relay-health.ts): the
      // deferral tests change its route right after, and the delivery must not wait out a minute.
      MAIL_SHAPING_BACKOFF: '0s',
      MAIL_SHAPING_DEFER: '300ms',
    },
    { routeCacheMs: 0 },
  );
});

afterAll(async () => {
  await engine?.stop();
  await dns?.close();
  await Promise.all([mx?.close(), relayA?.close(), relayB?.close(), relayAuth?.close(), refuser?.close()]);
  untrust?.();
  await db?.drop();
  await smtpDb?.drop();
});

describe('routes in mx mode', () => {
  it('a routed domain goes to its relay host while the others go direct to their MX host; the attempt records the route', async () => {
    await setRoute(db.pool, { domain: 'tickets.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'opportunistic' });
    const routed = await queueDelivery(db.pool, { recipient: 'help@tickets.routes.test' });
    const direct = await queueDelivery(db.pool, { recipient: 'bob@other.routes.test' });
    await waitForStatus(db.pool, routed, 'sent');
    await waitForStatus(db.pool, direct, 'sent');
    expect(whereAccepted('help@tickets.routes.test')).toEqual({ relayA: 1 });
    expect(whereAccepted('bob@other.routes.test')).toEqual({ mx: 1 });
    expect(await routedAttempts(db.pool, routed)).toMatchObject([
      { status: 'sent', route_domain: 'tickets.routes.test', route_relay: `${RELAY_A}:${relayA.port}`, route_tls: 'opportunistic' },
    ]);
    const [directAttempt] = await routedAttempts(db.pool, direct);
    expect(directAttempt).toMatchObject({ status: 'sent', route_domain: null, route_relay: 'mx', route_tls: 'opportunistic' });
    expect(directAttempt?.smtp_text).toContain(`(mx.routes.test[${MX_HOST}]:${mx.port}, no TLS)`);
  });

  it('exact beats the longest parent route, which beats a shorter one, which beats the default', async () => {
    await setRoute(db.pool, { domain: '.sub.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'opportunistic' });
    await setRoute(db.pool, { domain: '.deep.sub.routes.test', relay: `${RELAY_B}:${relayB.port}`, tls: 'opportunistic' });
    const cases = { 'a@x.sub.routes.test': 'relayA', 'a@y.deep.sub.routes.test': 'relayB', 'a@sub.routes.test': 'mx' } as const;
    const ids = await Promise.all(Object.keys(cases).map((recipient) => queueDelivery(db.pool, { recipient })));
    for (const id of ids) await waitForStatus(db.pool, id, 'sent');
    for (const [recipient, where] of Object.entries(cases)) expect(whereAccepted(recipient), recipient).toEqual({ [where]: 1 });
    expect((await routedAttempts(db.pool, ids[1] as string))[0]).toMatchObject({ route_domain: '.deep.sub.routes.test' });
  });

  it('a changed route takes effect for the next delivery, and a deleted one sends it back to the default', async () => {
    await setRoute(db.pool, { domain: 'change.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'opportunistic' });
    await waitForStatus(db.pool, await queueDelivery(db.pool, { recipient: 'one@change.routes.test' }), 'sent');
    await setRoute(db.pool, { domain: 'change.routes.test', relay: `${RELAY_B}:${relayB.port}`, tls: 'opportunistic' });
    await waitForStatus(db.pool, await queueDelivery(db.pool, { recipient: 'two@change.routes.test' }), 'sent');
    await deleteRoute(db.pool, { domain: 'change.routes.test' });
    await waitForStatus(db.pool, await queueDelivery(db.pool, { recipient: 'three@change.routes.test' }), 'sent');
    expect(whereAccepted('one@change.routes.test')).toEqual({ relayA: 1 });
    // relayB offers STARTTLS with an unverifiable certificate: opportunistic TLS uses it all the same.
    expect(whereAccepted('two@change.routes.test')).toEqual({ relayB: 1 });
    expect(whereAccepted('three@change.routes.test')).toEqual({ mx: 1 });
  });

  it('a route to a host that refuses the connection, or greets with 554, defers (never a bounce); fixed, the mail goes out once', async () => {
    await setRoute(db.pool, { domain: 'refused.routes.test', relay: `${REFUSING}:${relayA.port}`, tls: 'opportunistic' });
    // Mail the edge accepted: a failure for good would bounce it.
    const { deliveryId: id } = await insertAcceptedMessage(db.pool, 'sender@outside.test', 'x@refused.routes.test');
    await waitFor('two refused attempts', () => routedAttempts(db.pool, id), (rows) => rows.length >= 2, { timeoutMs: 30_000 });
    await setRoute(db.pool, { domain: 'refused.routes.test', relay: `${GREETS_554}:${relayA.port}`, tls: 'opportunistic' });
    await waitFor('an attempt at the 554 greeter', () => routedAttempts(db.pool, id), (rows) => rows.some((row) => row.route_relay?.startsWith(GREETS_554)), {
      timeoutMs: 30_000,
    });
    const row = await deliveryRow(db.pool, id);
    expect(row?.status).not.toBe('failed');
    await setRoute(db.pool, { domain: 'refused.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'opportunistic' });
    await waitForStatus(db.pool, id, 'sent', 30_000);
    const attempts = await routedAttempts(db.pool, id);
    const failed = attempts.filter((attempt) => attempt.status !== 'sent');
    expect(failed.length).toBeGreaterThanOrEqual(3);
    for (const attempt of failed) expect(attempt.status).toBe('transport_failed');
    expect(failed.some((attempt) => /refused the session: .*554 5\.7\.1 no service for you/.test(attempt.smtp_text ?? ''))).toBe(true);
    expect(failed[0]?.route_relay).toBe(`${REFUSING}:${relayA.port}`);
    expect(whereAccepted('x@refused.routes.test')).toEqual({ relayA: 1 });
    const bounces = await db.pool.query("SELECT 1 FROM mail.deliveries WHERE source = 'postern-dsn'");
    expect(bounces.rowCount).toBe(0);
  });

  it('tls required: a relay whose certificate does not verify, or that offers no STARTTLS, gets nothing; the delivery waits', async () => {
    await setRoute(db.pool, { domain: 'tls.routes.test', relay: `${RELAY_B}:${relayB.port}`, tls: 'required' });
    const id = await queueDelivery(db.pool, { recipient: 'secret@tls.routes.test' });
    await waitFor('two attempts refused for TLS', () => routedAttempts(db.pool, id), (rows) => rows.length >= 2, { timeoutMs: 30_000 });
    await setRoute(db.pool, { domain: 'tls.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'required' });
    await waitFor('an attempt at the relay without STARTTLS', () => routedAttempts(db.pool, id), (rows) => rows.some((row) => row.route_relay?.startsWith(RELAY_A)), {
      timeoutMs: 30_000,
    });
    expect((await deliveryRow(db.pool, id))?.status).toBe('retrying');
    const attempts = await routedAttempts(db.pool, id);
    for (const attempt of attempts) expect(attempt).toMatchObject({ status: 'transport_failed', route_tls: 'required' });
    expect(relayB.seen.get('secret@tls.routes.test')).toBeUndefined();
    expect(relayA.seen.get('secret@tls.routes.test')).toBeUndefined();
    await deleteRoute(db.pool, { domain: 'tls.routes.test' });
    await waitForStatus(db.pool, id, 'sent', 30_000);
  });

  it('a route with credentials authenticates to its relay over verified TLS; wrong credentials defer the delivery', async () => {
    const route = { domain: 'auth.routes.test', relay: `${RELAY_AUTH}:${relayAuth.port}`, tls: 'required' };
    await setRoute(db.pool, { ...route, auth: { username: 'postern', password: 'wrong horse' } }, secretsKeyOf(secretsKey));
    const id = await queueDelivery(db.pool, { recipient: 'someone@auth.routes.test' });
    await waitFor('two attempts refused by the relay', () => routedAttempts(db.pool, id), (rows) => rows.length >= 2, { timeoutMs: 30_000 });
    expect((await deliveryRow(db.pool, id))?.status).toBe('retrying');
    for (const attempt of await routedAttempts(db.pool, id)) expect(attempt).toMatchObject({ status: 'transport_failed', route_domain: 'auth.routes.test' });
    expect(relayAuth.logins.length).toBeGreaterThanOrEqual(2);
    expect(relayAuth.logins.every((login) => login.username === 'postern' && !login.ok)).toBe(true);
    expect(relayAuth.seen.get('someone@auth.routes.test')).toBeUndefined();
    await setRoute(db.pool, { ...route, auth: { username: 'postern', password: 'right horse' } }, secretsKeyOf(secretsKey));
    await waitForStatus(db.pool, id, 'sent', 30_000);
    expect(relayAuth.logins.at(-1)).toEqual({ username: 'postern', ok: true });
    expect(relayAuth.accepted.get('someone@auth.routes.test')).toBe(1);
    const attempts = await routedAttempts(db.pool, id);
    expect(attempts.at(-1)).toMatchObject({ status: 'sent', route_domain: 'auth.routes.test', route_relay: `${RELAY_AUTH}:${relayAuth.port}`, route_tls: 'required' });
    // The refusals' text names the relay's reply, never the password.
    expect(JSON.stringify(attempts)).not.toContain('horse');
    await deleteRoute(db.pool, { domain: 'auth.routes.test' });
  });

  it("an engine that cannot open a route's credentials says so when it starts, naming the route", async () => {
    await setRoute(db.pool, { domain: 'auth.routes.test', relay: `${RELAY_AUTH}:${relayAuth.port}`, tls: 'required', auth: { username: 'postern', password: 'right horse' } }, secretsKeyOf(secretsKey));
    const otherKeys: Array<Record<string, string>> = [{}, { MAIL_SECRETS_KEY: randomBytes(32).toString('base64') }];
    for (const otherKey of otherKeys) {
      const lines: string[] = [];
      const destination = { write: (line: string) => lines.push(line) };
      const other = await startTestEngine(
        db.dsn,
        { MAIL_SMTP_MODE: 'mx', MAIL_DNS_SERVERS: dns.server, MAIL_MX_PRIVATE_ADDRESSES: 'allow', ...otherKey },
        { logger: createLogger('core-e2e', 'info', { destination }), routeCacheMs: 0 },
      );
      await other.stop();
      const said = lines.map((line) => JSON.parse(line)).find((entry) => entry.level === 50 && Array.isArray(entry.routes));
      expect(said?.routes).toEqual([{ domain: 'auth.routes.test', why: expect.stringContaining('cannot be opened with MAIL_SECRETS_KEY') }]);
      expect(lines.join('\n')).not.toContain('right horse');
    }
    await deleteRoute(db.pool, { domain: 'auth.routes.test' });
  });
});

describe('routes in smtp and stub mode', () => {
  it('smtp mode: an "mx" route sends one domain direct, everything else goes to MAIL_SMTP_ADDR', async () => {
    smtpDb = await createTestDatabase('mx-routes-smtp');
    const smtpEngine = await startTestEngine(
      smtpDb.dsn,
      { MAIL_SMTP_MODE: 'smtp', MAIL_SMTP_ADDR: `${RELAY_A}:${relayA.port}`, MAIL_MX_PORT: String(mx.port), MAIL_MX_PRIVATE_ADDRESSES: 'allow', MAIL_DNS_SERVERS: dns.server },
      { routeCacheMs: 0 },
    );
    try {
      await setRoute(smtpDb.pool, { domain: 'direct.routes.test', relay: 'mx', tls: 'opportunistic' });
      const direct = await queueDelivery(smtpDb.pool, { recipient: 'd@direct.routes.test' });
      const relayed = await queueDelivery(smtpDb.pool, { recipient: 'r@other.routes.test' });
      await waitForStatus(smtpDb.pool, direct, 'sent');
      await waitForStatus(smtpDb.pool, relayed, 'sent');
      expect(whereAccepted('d@direct.routes.test')).toEqual({ mx: 1 });
      expect(whereAccepted('r@other.routes.test')).toEqual({ relayA: 1 });
      expect((await routedAttempts(smtpDb.pool, direct))[0]).toMatchObject({ route_domain: 'direct.routes.test', route_relay: 'mx' });
      expect((await routedAttempts(smtpDb.pool, relayed))[0]).toMatchObject({ route_domain: null, route_relay: `${RELAY_A}:${relayA.port}`, route_tls: null });
    } finally {
      await smtpEngine.stop();
    }
  });

  it('stub mode: routes are ignored, nothing is sent', async () => {
    const stubDb = await createTestDatabase('mx-routes-stub');
    const stub = await startTestEngine(stubDb.dsn, { MAIL_SMTP_MODE: 'stub' }, { routeCacheMs: 0 });
    try {
      await setRoute(stubDb.pool, { domain: 'stub.routes.test', relay: `${RELAY_A}:${relayA.port}`, tls: 'opportunistic' });
      const id = await queueDelivery(stubDb.pool, { recipient: 's@stub.routes.test' });
      await waitForStatus(stubDb.pool, id, 'sent');
      expect(whereAccepted('s@stub.routes.test')).toEqual({});
      expect((await routedAttempts(stubDb.pool, id))[0]).toMatchObject({ route_domain: null, route_relay: null });
    } finally {
      await stub.stop();
      await stubDb.drop();
    }
  });
});
